//! An S3-compatible server for tests: moto's server (from PyPI, installed by `make test`),
//! bound to 127.0.0.1 on a free port, stopped by its PID when dropped.

use anyhow::{Context, Result, bail};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running moto server with one bucket.
pub struct S3Server {
    /// `None` for a server another process started ([`S3Server::attach`]).
    child: Option<Child>,
    pub endpoint: String,
    pub bucket: String,
}

impl S3Server {
    /// Starts moto on a free loopback port and creates `bucket`.
    ///
    /// # Errors
    /// When moto is not installed or does not come up.
    pub fn start(bucket: &str) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context(
                "starting moto_server (pip install \"moto[server]\"; make test installs it)",
            )?;
        let server = S3Server {
            child: Some(child),
            endpoint: format!("http://127.0.0.1:{port}"),
            bucket: bucket.to_owned(),
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                server.curl(&["-X", "PUT", &format!("{}/{bucket}", server.endpoint)])?;
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("moto_server did not start on port {port}")
    }

    /// A server another process started (and stops), at `endpoint` with `bucket`.
    pub fn attach(endpoint: &str, bucket: &str) -> Self {
        S3Server {
            child: None,
            endpoint: endpoint.to_owned(),
            bucket: bucket.to_owned(),
        }
    }

    /// The `AWS_*` variables a metastore or client needs to use this server.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
    }

    /// Object keys under `prefix` (first 1000).
    ///
    /// # Errors
    /// When the listing fails.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let xml = self.curl(&[&format!(
            "{}/{}?list-type=2&prefix={prefix}",
            self.endpoint, self.bucket
        )])?;
        Ok(xml
            .split("<Key>")
            .skip(1)
            .filter_map(|part| part.split("</Key>").next())
            .map(str::to_owned)
            .collect())
    }

    /// Stores `bytes` under `key` (moto takes unsigned requests).
    ///
    /// # Errors
    /// When the upload fails.
    pub fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let file = tempfile::NamedTempFile::new()?;
        std::fs::write(file.path(), bytes)?;
        // `-T` uploads the file as the body (a form-encoded body makes moto wait forever).
        self.curl(&[
            "-T",
            &file.path().display().to_string(),
            &format!("{}/{}/{key}", self.endpoint, self.bucket),
        ])?;
        Ok(())
    }

    fn curl(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("curl")
            .arg("-sf")
            .args(args)
            .output()
            .context("running curl")?;
        if !out.status.success() {
            bail!(
                "curl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
