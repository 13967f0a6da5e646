//! Backup and restore of a node on the embedded backends (docs/operations.md, "Backup and
//! restore"): the store, every event queue and the data folder's secrets, with a manifest.
//!
//! ```text
//!  data_dir/store/chatwire.redb ──one read transaction──▶ DIR/store/chatwire.redb
//!  data_dir/events/NAME.redb    ──one read transaction──▶ DIR/events/NAME.redb   (each)
//!  data_dir/{jwt-secret, admin-key, tls-cert.der, tls-key.der} ──copy──▶ DIR/...
//!  sizes and SHA-256 of every file ──────────────────────────────────▶ DIR/manifest.json
//! ```
//!
//! A running server makes the copies itself (`POST /admin/backup`): each database is copied
//! as of one commit while clients go on writing. With no server running the files are opened
//! and copied the same way. Restore checks every file against the manifest before it writes
//! anything, and refuses a data folder that is not empty.

use std::io::Read as _;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::backend::embedded::{self, EmbeddedStore};
use crate::backend::events_embedded::{self, EmbeddedEventQueue};
use crate::backend::redb_backup::CopyError;
use crate::devdefaults::{ADMIN_KEY_FILE, JWT_SECRET_FILE, TLS_CERT_FILE, TLS_KEY_FILE};

/// The manifest's file name inside a backup folder.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The manifest format this build writes and reads.
pub const MANIFEST_FORMAT: u32 = 1;
/// The store's folder inside a data folder (and a backup).
pub const STORE_DIR: &str = "store";
/// The event queues' folder inside a data folder (and a backup).
pub const EVENTS_DIR: &str = "events";
/// The data folder's secret files a backup carries, when present.
pub const SECRET_FILES: &[&str] = &[JWT_SECRET_FILE, ADMIN_KEY_FILE, TLS_CERT_FILE, TLS_KEY_FILE];

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Manifest {
    /// The manifest format, 1.
    pub format: u32,
    /// The version of the `chatwire` that wrote it.
    pub chatwire_version: String,
    /// When the backup was taken, Unix milliseconds.
    pub created_at_ms: i64,
    /// True when a running server made the copies, false when the files were copied with no
    /// server running.
    pub online: bool,
    /// Every file of the backup.
    pub files: Vec<ManifestFile>,
}

/// One file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ManifestFile {
    /// Its path inside the backup and inside the data folder, `/`-separated.
    pub path: String,
    /// `store`, `event_queue` or `secret`.
    pub kind: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// SHA-256 of its content, lower-case hex.
    pub sha256: String,
    /// Entries copied (databases only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entries: Option<u64>,
}

/// Why a backup or a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The target folder holds files already.
    #[error("{0} is not empty: give a new or empty folder")]
    NotEmpty(String),
    /// A database could not be copied.
    #[error(transparent)]
    Copy(#[from] CopyError),
    /// The backup folder's manifest is missing, unreadable or does not match its files.
    #[error("backup {0}")]
    Invalid(String),
    /// A file could not be read or written.
    #[error("{0}")]
    Io(String),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> BackupError + '_ {
    move |e| BackupError::Io(format!("{}: {e}", path.display()))
}

/// The open databases of a running server, copied through their handles (the others are
/// opened from their files).
#[derive(Debug, Clone, Default)]
pub struct OpenDatabases {
    /// The store.
    pub store: Option<EmbeddedStore>,
    /// The event queues by consumer name (`push`, `app`: file `events/NAME.redb`).
    pub queues: Vec<(String, EmbeddedEventQueue)>,
}

/// Backs up `data_dir` into `to` (created; refused unless new or empty), copying the
/// databases in `open` through their handles and every other database file directly.
pub fn backup(
    data_dir: &Path,
    open: &OpenDatabases,
    to: &Path,
    now_ms: i64,
) -> Result<Manifest, BackupError> {
    ensure_empty(to)?;
    std::fs::create_dir_all(to).map_err(io(to))?;
    let mut files = Vec::new();
    // The store.
    let store_rel = format!("{STORE_DIR}/{}", embedded::FILE_NAME);
    let src = data_dir.join(STORE_DIR).join(embedded::FILE_NAME);
    let dest = to.join(STORE_DIR).join(embedded::FILE_NAME);
    let entries = match &open.store {
        Some(store) => Some(store.backup_to(&dest)?),
        None if src.exists() => Some(embedded::backup_file(&src, &dest)?),
        None => None,
    };
    if let Some(entries) = entries {
        files.push(describe(to, &store_rel, "store", Some(entries))?);
    }
    // Every event queue in the folder.
    let events = data_dir.join(EVENTS_DIR);
    let mut names: Vec<String> = match std::fs::read_dir(&events) {
        Ok(dir) => dir
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|n| n.ends_with(".redb"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io(&events)(e)),
    };
    names.sort();
    for name in names {
        let rel = format!("{EVENTS_DIR}/{name}");
        let dest = to.join(EVENTS_DIR).join(&name);
        let stem = name.trim_end_matches(".redb");
        let entries = match open.queues.iter().find(|(n, _)| n == stem) {
            Some((_, queue)) => queue.backup_to(&dest)?,
            None => events_embedded::backup_file(&events.join(&name), &dest)?,
        };
        files.push(describe(to, &rel, "event_queue", Some(entries))?);
    }
    // The secrets.
    for name in SECRET_FILES {
        let src = data_dir.join(name);
        if !src.exists() {
            continue;
        }
        let dest = to.join(name);
        copy_private(&src, &dest)?;
        files.push(describe(to, name, "secret", None)?);
    }
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        chatwire_version: env!("CARGO_PKG_VERSION").to_owned(),
        created_at_ms: now_ms,
        online: open.store.is_some(),
        files,
    };
    let path = to.join(MANIFEST_FILE);
    let text = serde_json::to_string_pretty(&manifest)
        .map_err(|e| BackupError::Io(format!("manifest: {e}")))?;
    std::fs::write(&path, text + "\n").map_err(io(&path))?;
    Ok(manifest)
}

/// Restores the backup in `from` into `data_dir`, which must be new or empty. Every file is
/// checked against the manifest (size and SHA-256) before anything is written.
pub fn restore(from: &Path, data_dir: &Path) -> Result<Manifest, BackupError> {
    let manifest = read_manifest(from)?;
    ensure_empty(data_dir)?;
    for file in &manifest.files {
        let src = from.join(&file.path);
        let (bytes, sha256) = digest(&src)?;
        if bytes != file.bytes || sha256 != file.sha256 {
            return Err(BackupError::Invalid(format!(
                "{}: {} does not match its manifest entry (damaged or changed)",
                from.display(),
                file.path
            )));
        }
    }
    std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700));
    }
    for file in &manifest.files {
        let dest = data_dir.join(&file.path);
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        copy_private(&from.join(&file.path), &dest)?;
    }
    Ok(manifest)
}

/// Reads and checks the manifest of the backup in `from`.
pub fn read_manifest(from: &Path) -> Result<Manifest, BackupError> {
    let path = from.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        BackupError::Invalid(format!(
            "{}: no readable {MANIFEST_FILE} ({e}): not a chatwire backup, or an unfinished one",
            from.display()
        ))
    })?;
    let manifest: Manifest = serde_json::from_str(&text)
        .map_err(|e| BackupError::Invalid(format!("{}: {e}", path.display())))?;
    if manifest.format != MANIFEST_FORMAT {
        return Err(BackupError::Invalid(format!(
            "{}: format {} (this build reads {MANIFEST_FORMAT})",
            path.display(),
            manifest.format
        )));
    }
    for file in &manifest.files {
        let relative = Path::new(&file.path);
        let plain = relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
        if !plain || file.path.is_empty() {
            return Err(BackupError::Invalid(format!(
                "{}: path {:?} leaves the backup folder",
                path.display(),
                file.path
            )));
        }
    }
    Ok(manifest)
}

/// Refuses a folder that exists with anything in it.
fn ensure_empty(dir: &Path) -> Result<(), BackupError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(BackupError::NotEmpty(dir.display().to_string())),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(dir)(e)),
    }
}

fn describe(
    root: &Path,
    rel: &str,
    kind: &str,
    entries: Option<u64>,
) -> Result<ManifestFile, BackupError> {
    let (bytes, sha256) = digest(&root.join(rel))?;
    Ok(ManifestFile {
        path: rel.to_owned(),
        kind: kind.to_owned(),
        bytes,
        sha256,
        entries,
    })
}

fn digest(path: &Path) -> Result<(u64, String), BackupError> {
    let mut file = std::fs::File::open(path).map_err(io(path))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buffer).map_err(io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        bytes += n as u64;
    }
    let hex = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((bytes, hex))
}

/// Copies a file, readable by its owner only, synced.
fn copy_private(src: &Path, dest: &Path) -> Result<(), BackupError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = options.open(dest).map_err(io(dest))?;
    let mut input = std::fs::File::open(src).map_err(io(src))?;
    std::io::copy(&mut input, &mut out).map_err(io(dest))?;
    out.sync_all().map_err(io(dest))
}

/// The absolute form of `path` (relative to the current folder), for a path sent to a server.
pub fn absolute(path: &Path) -> Result<PathBuf, BackupError> {
    std::path::absolute(path).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::embedded::EmbeddedOptions;
    use crate::backend::store::Accounts;
    use crate::chat::ids::UserId;

    /// A stopped node's data folder: a store with one record, and the secrets.
    fn node(dir: &Path) -> PathBuf {
        let data = dir.join("data");
        crate::devdefaults::load_or_create(&data).expect("secrets");
        let store =
            EmbeddedStore::open(&data.join(STORE_DIR), EmbeddedOptions::default()).expect("store");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let user = UserId::parse("alice").expect("user");
        runtime
            .block_on(store.revoke_tokens_before(&user, 1234))
            .expect("write");
        data
    }

    #[test]
    fn a_stopped_node_round_trips_and_a_damaged_backup_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = node(dir.path());
        let to = dir.path().join("backup");
        let manifest = backup(&data, &OpenDatabases::default(), &to, 1).expect("backup");
        assert!(!manifest.online);
        let kinds: Vec<&str> = manifest.files.iter().map(|f| f.kind.as_str()).collect();
        assert_eq!(kinds, ["store", "secret", "secret", "secret", "secret"]);
        // Into a folder that is not empty: refused, for a backup and for a restore.
        assert!(matches!(
            backup(&data, &OpenDatabases::default(), &to, 1),
            Err(BackupError::NotEmpty(_))
        ));
        assert!(matches!(restore(&to, &data), Err(BackupError::NotEmpty(_))));
        // Restored, the record is there and the secrets are the same.
        let restored = dir.path().join("restored");
        restore(&to, &restored).expect("restore");
        let store = EmbeddedStore::open(&restored.join(STORE_DIR), EmbeddedOptions::default())
            .expect("restored store");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let user = UserId::parse("alice").expect("user");
        assert_eq!(
            runtime
                .block_on(store.tokens_revoked_before(&user))
                .expect("read"),
            Some(1234)
        );
        assert_eq!(
            std::fs::read(restored.join(JWT_SECRET_FILE)).expect("secret"),
            std::fs::read(data.join(JWT_SECRET_FILE)).expect("secret")
        );
        // A changed file fails the manifest check before anything is written.
        std::fs::write(to.join(ADMIN_KEY_FILE), "0".repeat(64)).expect("tamper");
        let target = dir.path().join("second");
        let err = restore(&to, &target).expect_err("damaged");
        assert!(err.to_string().contains("admin-key"), "{err}");
        assert!(!target.exists());
    }

    #[test]
    fn a_manifest_cannot_name_paths_outside_the_backup() {
        let dir = tempfile::tempdir().expect("temp dir");
        for bad in ["../escape", "/etc/passwd", ""] {
            let manifest = Manifest {
                format: MANIFEST_FORMAT,
                chatwire_version: "0".into(),
                created_at_ms: 0,
                online: false,
                files: vec![ManifestFile {
                    path: bad.into(),
                    kind: "secret".into(),
                    bytes: 0,
                    sha256: String::new(),
                    entries: None,
                }],
            };
            std::fs::write(
                dir.path().join(MANIFEST_FILE),
                serde_json::to_string(&manifest).expect("json"),
            )
            .expect("manifest");
            let err = read_manifest(dir.path()).expect_err(bad);
            assert!(
                err.to_string().contains("leaves the backup folder"),
                "{err}"
            );
        }
        // No manifest: not a backup.
        let empty = tempfile::tempdir().expect("temp dir");
        assert!(matches!(
            read_manifest(empty.path()),
            Err(BackupError::Invalid(_))
        ));
    }
}
