//! `rust_websocket_autobahn_echo PORT`: a WebSocket echo server on 127.0.0.1:PORT with tokio-tungstenite
//! alone, every text or binary message sent back as the same kind, for Autobahn|Testsuite's
//! fuzzingclient. Message and frame limits are 32 MiB (the suite's largest case is 16 MiB);
//! the buffers the addon used before it read frames itself (8 KiB read chunk, 64 KiB write
//! batch). Prints READY once listening. Pings are answered and closes completed by tungstenite itself.

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("usage: rust_websocket_autobahn_echo PORT");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        println!("READY");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                stream.set_nodelay(true).ok();
                let config = WebSocketConfig::default()
                    .read_buffer_size(8 * 1024)
                    .write_buffer_size(64 * 1024)
                    .max_message_size(Some(32 << 20))
                    .max_frame_size(Some(32 << 20));
                let Ok(mut ws) =
                    tokio_tungstenite::accept_async_with_config(stream, Some(config)).await
                else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
}
