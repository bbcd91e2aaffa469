//! The `file` notifier: each message as one JSON line (the documented
//! schema), synced to disk; idempotent by message id, so a delivery retried
//! after a crash is not written twice.

use super::{Delivery, Notifier, SendError, SendFuture, message_json};
use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Mutex;

/// Appends each message as a JSON line, synced to disk. A message already
/// in the file (same id, a retry after a crash) is not written twice: the
/// receiving end of the delivery key.
pub struct FileNotifier {
    pub path: PathBuf,
    /// Where each line's `ack_url` points (none without an external URL).
    links: super::template::Links,
    file: Mutex<Option<OpenFile>>,
}

struct OpenFile {
    file: std::fs::File,
    written: HashSet<String>,
}

impl FileNotifier {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), links: Default::default(), file: Mutex::new(None) }
    }

    /// Lines carry the group's `ack_url` as `links` make it.
    pub fn with_links(self, links: super::template::Links) -> Self {
        Self { links, ..self }
    }

    fn open(&self) -> std::io::Result<OpenFile> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new().create(true).read(true).append(true).open(&self.path)?;
        let mut written = HashSet::new();
        for line in std::io::BufReader::new(&file).lines() {
            let line = line?;
            if let Some(id) = serde_json::from_str::<serde_json::Value>(&line)
                .ok()
                .and_then(|v| v.get("id")?.as_str().map(String::from))
            {
                written.insert(id);
            }
        }
        Ok(OpenFile { file, written })
    }
}

impl FileNotifier {
    fn write(&self, d: &Delivery) -> std::io::Result<()> {
        let m = &d.message;
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = Some(self.open()?);
        }
        let open = guard.as_mut().ok_or_else(|| std::io::Error::other("file not open"))?;
        if open.written.contains(&m.id) {
            return Ok(());
        }
        let mut json = message_json(m, &d.channel);
        if let Some(url) = self.links.ack_url(&m.group_id, m.at).filter(|_| !m.digest) {
            json["ack_url"] = url.into();
        }
        let mut line = json.to_string();
        line.push('\n');
        open.file.write_all(line.as_bytes()).and_then(|()| open.file.sync_data())?;
        open.written.insert(m.id.clone());
        Ok(())
    }
}

impl Notifier for FileNotifier {
    fn send<'a>(&'a self, d: &'a Delivery) -> SendFuture<'a> {
        let result = self.write(d).map_err(|e| SendError::Retryable(format!("{}: {e}", self.path.display())));
        Box::pin(std::future::ready(result))
    }
    fn health(&self) -> SendFuture<'_> {
        let result = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map(drop)
            .map_err(|e| SendError::Retryable(format!("{}: {e}", self.path.display())));
        Box::pin(std::future::ready(result))
    }
}
