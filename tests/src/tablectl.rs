//! Running the real `tablectl` binary against a test metastore.

use anyhow::{Context, Result, bail};
use std::process::{Command, Output};

/// How to call tablectl: which metastore, which extra environment.
#[derive(Debug, Clone)]
pub struct Tablectl {
    pub endpoint: String,
    pub env: Vec<(String, String)>,
}

impl Tablectl {
    /// A command line ready to run (`--endpoint` set).
    ///
    /// # Errors
    /// When the binary has not been built.
    pub fn command(&self, args: &[&str]) -> Result<Command> {
        let mut command = Command::new(crate::tablectl_binary()?);
        command
            .arg("--endpoint")
            .arg(&self.endpoint)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        Ok(command)
    }

    /// Runs and returns the output, successful or not.
    ///
    /// # Errors
    /// When the process cannot run.
    pub fn run(&self, args: &[&str]) -> Result<Output> {
        self.command(args)?.output().context("running tablectl")
    }

    /// Runs, requires success, and returns stdout.
    ///
    /// # Errors
    /// When tablectl fails; the error holds its stderr.
    pub fn ok(&self, args: &[&str]) -> Result<String> {
        let out = self.run(args)?;
        if !out.status.success() {
            bail!(
                "tablectl {args:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    /// Runs with `--json`, requires success, and parses the document.
    ///
    /// # Errors
    /// When tablectl fails or prints something else than JSON.
    pub fn json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let text = self.ok(&all)?;
        serde_json::from_str(&text).with_context(|| format!("tablectl printed no JSON: {text}"))
    }
}
