//! Godot-free core of `RustWebSocketMultiplayerPeer`.
//!
//! Everything here is plain Rust: a shared tokio runtime, the server accept loop, the client
//! connector, and one task per WebSocket connection. The Godot layer talks to it only through
//! [`events::Event`]s (a crossbeam channel drained on the main thread) and the thread-safe
//! [`connection::Connection`] handles (a bounded outbound queue per peer). Nothing here touches
//! the engine, so `cargo test` drives it with real tokio-tungstenite peers on 127.0.0.1.

pub mod admission;
pub mod client;
pub mod config;
pub mod connection;
mod driver;
pub mod events;
pub mod fence;
mod frame;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod metrics;
mod protocol;
pub mod proxy;
pub mod proxy_protocol;
pub mod ready;
pub mod runtime;
pub mod server;
mod shared_tcp;
mod shared_tls;
pub mod termination;
pub mod tls;
pub mod url;

pub use tokio_tungstenite::tungstenite::Bytes;
