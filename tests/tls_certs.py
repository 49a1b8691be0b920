"""Certificates for the TLS scenarios, made at test time with the `openssl` command (nothing
with a private key is committed).

`make_pki(dir)` writes, as PEM files:
  root.pem                     a root CA (RSA 2048)
  inter.pem                    an intermediate CA signed by the root (pathlen 0)
  rsa_key.pem, rsa_leaf.pem    an RSA leaf for localhost / 127.0.0.1, signed by the intermediate
  rsa_fullchain.pem            the RSA leaf followed by the intermediate (as Let's Encrypt's)
  ec_key.pem, ec_fullchain.pem the same with an ECDSA P-256 leaf
  other1.pem, other2.pem       two unrelated root CAs
  bundle.pem                   other1 + other2 + root, in that order (the server's CA last)
  others.pem                   other1 + other2 (nothing that leads to the server)
  bundle.crt, others.crt       copies, for Godot's resource loader (`load("….crt")`)
and, for what a client must refuse as mbedTLS does (each with its key as <name>_key.pem):
  pin.pem                      a CA:FALSE leaf (no keyUsage), trusted alone by the client
  forged_by_pin.pem            a leaf for localhost signed with pin's key
  badku_chain.pem              leaf + an intermediate with CA:TRUE but keyUsage digitalSignature
  root0.pem, len0_chain.pem    a root with pathlen 0; leaf + an intermediate under it
  ec_nods.pem                  an ECDSA leaf under root whose keyUsage lacks digitalSignature
"""

from __future__ import annotations

import os
import shutil
import subprocess

MISSING_MESSAGE = "openssl not found: the TLS scenarios make their certificates with it"

CA_EXT = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
INTER_EXT = "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n"
LEAF_EXT = ("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n")


def _openssl(d: str, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)


def _key(d: str, name: str, kind: str) -> None:
    if kind == "rsa":
        _openssl(d, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                 "-out", name)
    else:
        _openssl(d, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-pkeyopt", "ec_param_enc:named_curve", "-out", name)


def self_signed(d: str, name: str, cn: str, ext: str = CA_EXT, kind: str = "rsa") -> None:
    """`name`.pem signed by its own key `name`.key."""
    _key(d, f"{name}.key", kind)
    with open(os.path.join(d, f"{name}.ext"), "w") as f:
        f.write(ext)
    _openssl(d, "req", "-x509", "-new", "-key", f"{name}.key", "-out", f"{name}.pem",
             "-days", "30", "-subj", f"/CN={cn}/O=rwsmp tests", "-extensions", "v3",
             "-config", _req_config(d, name, ext))


def signed(d: str, name: str, cn: str, issuer: str, ext: str, kind: str = "rsa") -> None:
    """`name`.pem with key `name`.key, signed by `issuer`.pem / `issuer`.key."""
    _key(d, f"{name}.key", kind)
    _openssl(d, "req", "-new", "-key", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN={cn}/O=rwsmp tests")
    with open(os.path.join(d, f"{name}.ext"), "w") as f:
        f.write(ext)
    _openssl(d, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{issuer}.pem",
             "-CAkey", f"{issuer}.key", "-CAcreateserial", "-out", f"{name}.pem",
             "-days", "30", "-extfile", f"{name}.ext")


def _req_config(d: str, name: str, ext: str) -> str:
    path = os.path.join(d, f"{name}.cnf")
    with open(path, "w") as f:
        f.write("[req]\ndistinguished_name=dn\n[dn]\n[v3]\n" + ext)
    return path


def concat(d: str, out: str, *names: str) -> None:
    with open(os.path.join(d, out), "w") as f:
        for n in names:
            with open(os.path.join(d, n)) as part:
                f.write(part.read())


def make_pki(d: str) -> None:
    if shutil.which("openssl") is None:
        raise RuntimeError(MISSING_MESSAGE)
    self_signed(d, "root", "rwsmp test root")
    signed(d, "inter", "rwsmp test intermediate", "root", INTER_EXT)
    signed(d, "rsa_leaf", "localhost", "inter", LEAF_EXT, "rsa")
    signed(d, "ec_leaf", "localhost", "inter", LEAF_EXT, "ec")
    shutil.copy(os.path.join(d, "rsa_leaf.key"), os.path.join(d, "rsa_key.pem"))
    shutil.copy(os.path.join(d, "ec_leaf.key"), os.path.join(d, "ec_key.pem"))
    concat(d, "rsa_fullchain.pem", "rsa_leaf.pem", "inter.pem")
    concat(d, "ec_fullchain.pem", "ec_leaf.pem", "inter.pem")
    self_signed(d, "other1", "rwsmp unrelated CA 1")
    self_signed(d, "other2", "rwsmp unrelated CA 2", kind="ec")
    concat(d, "bundle.pem", "other1.pem", "other2.pem", "root.pem")
    concat(d, "others.pem", "other1.pem", "other2.pem")
    _refusals(d)
    # Godot loads .crt files as X509Certificate resources.
    shutil.copy(os.path.join(d, "bundle.pem"), os.path.join(d, "bundle.crt"))
    shutil.copy(os.path.join(d, "others.pem"), os.path.join(d, "others.crt"))


def _refusals(d: str) -> None:
    """Chains the built-in (mbedTLS) refuses; see the module docs."""
    san = "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
    signed(d, "pin", "localhost", "inter", "basicConstraints=critical,CA:FALSE\n" + san)
    signed(d, "forged_by_pin", "rwsmp forged (SAN localhost)", "pin", LEAF_EXT)
    signed(d, "badku_inter", "rwsmp intermediate without keyCertSign", "root",
           "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,digitalSignature\n")
    signed(d, "badku_leaf", "localhost", "badku_inter", LEAF_EXT)
    concat(d, "badku_chain.pem", "badku_leaf.pem", "badku_inter.pem")
    self_signed(d, "root0", "rwsmp test root pathlen 0",
                "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n")
    signed(d, "inter0", "rwsmp intermediate under pathlen 0", "root0",
           "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n")
    signed(d, "len0_leaf", "localhost", "inter0", LEAF_EXT)
    concat(d, "len0_chain.pem", "len0_leaf.pem", "inter0.pem")
    signed(d, "ec_nods", "localhost", "root",
           "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,keyAgreement\n"
           "extendedKeyUsage=serverAuth\n" + san, "ec")
    for name in ("forged_by_pin", "badku_leaf", "len0_leaf", "ec_nods"):
        shutil.copy(os.path.join(d, f"{name}.key"), os.path.join(d, f"{name}_key.pem"))


def pki_hook(ctx) -> list:
    """Test hook: makes the certificates in the sync directory, then flags `certs_ready` (or
    `certs_failed`, with a failed check saying why)."""
    try:
        make_pki(ctx.dir)
    except (RuntimeError, subprocess.SubprocessError, OSError) as e:
        detail = getattr(e, "stderr", b"") or b""
        ctx.flag("certs_failed")
        ctx.barrier("done")
        return [(False, "py.make_certificates", f"{e} {detail.decode(errors='replace')[-300:]}")]
    ctx.flag("certs_ready")
    ctx.barrier("done")  # a barrier party in the scenarios that use it; harmless otherwise
    return [(True, "py.make_certificates", "")]
