//! `testkit`: test credentials for the Python and R suites, made by the same code as the Rust
//! suites' (`batchstore_tests::credentials`).
//!
//! `testkit tls DIR` writes a CA, a server certificate for localhost/127.0.0.1, a client
//! certificate and an unrelated CA as PEM files into DIR (ca.pem, server.pem, server.key,
//! client.pem, client.key, wrong-ca.pem).

use anyhow::{Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [command, dir] if command == "tls" => {
            batchstore_tests::credentials::TlsFiles::write(std::path::Path::new(dir))?;
            Ok(())
        }
        _ => bail!("usage: testkit tls DIR"),
    }
}
