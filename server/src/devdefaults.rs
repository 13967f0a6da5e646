//! Development defaults (docs/architecture.md "Development defaults"): secrets created once in the
//! data folder and reused on every restart, so tokens, the admin key and certificate pins survive
//! restarts.
//!
//! | file | content |
//! |---|---|
//! | `jwt-secret` | 32 random bytes, the HS256 signing secret |
//! | `admin-key` | 32 random bytes as 64 lower-case hex characters |
//! | `tls-key.der` | PKCS#8 ECDSA P-256 key of the QUIC/TLS certificate |
//! | `tls-cert.der` | self-signed certificate for `localhost`, `127.0.0.1` and `::1` |
//!
//! Files are created with mode 0600, each written to a temporary file, synced, then linked
//! into place without replacing anything: a crash never leaves half a file, and two processes
//! starting at once end up with the same secrets. An existing file is read and checked, never
//! overwritten; a damaged one is an error that names the file, not a silent regeneration
//! (which would invalidate every issued token or certificate pin).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

/// The HS256 secret file.
pub const JWT_SECRET_FILE: &str = "jwt-secret";
/// The admin key file.
pub const ADMIN_KEY_FILE: &str = "admin-key";
/// The certificate file (DER).
pub const TLS_CERT_FILE: &str = "tls-cert.der";
/// The certificate's private key file (PKCS#8 DER).
pub const TLS_KEY_FILE: &str = "tls-key.der";
/// Length of the generated HS256 secret.
pub const JWT_SECRET_BYTES: usize = 32;
/// Random bytes in the admin key (twice as many hex characters).
pub const ADMIN_KEY_BYTES: usize = 32;
/// Names the development certificate is valid for.
pub const TLS_NAMES: &[&str] = &["localhost", "127.0.0.1", "::1"];

/// The development secrets of one data folder.
#[derive(Clone, PartialEq, Eq)]
pub struct DevSecrets {
    /// HS256 secret, [`JWT_SECRET_BYTES`] bytes.
    pub jwt_secret: Vec<u8>,
    /// Admin API key, 64 lower-case hex characters.
    pub admin_key: String,
    /// Self-signed certificate, DER.
    pub tls_cert_der: Vec<u8>,
    /// Its private key, PKCS#8 DER.
    pub tls_key_der: Vec<u8>,
}

impl std::fmt::Debug for DevSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevSecrets")
            .field("jwt_secret", &"[redacted]")
            .field("admin_key", &"[redacted]")
            .field(
                "tls_cert_der",
                &format_args!("{} bytes", self.tls_cert_der.len()),
            )
            .field("tls_key_der", &"[redacted]")
            .finish()
    }
}

/// Why the development secrets could not be read or created.
#[derive(Debug, thiserror::Error)]
pub enum DevDefaultsError {
    /// The data folder could not be created.
    #[error("cannot create data folder {path}: {source}")]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A file exists but does not hold what it should.
    #[error(
        "{path} is damaged: {problem}. Restore it from a backup, or delete it to generate a new \
         one ({consequence})"
    )]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
        /// What deleting it costs.
        consequence: &'static str,
    },
    /// A secret file other users may read or write: refused rather than used.
    #[error(
        "{path} is a secret but other users may access it (mode {mode:o}); run `chmod 600 {path}` \
         and check who read it"
    )]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The operating system gave no random bytes.
    #[error("no randomness from the operating system: {0}")]
    Random(String),
    /// The certificate could not be generated.
    #[error("cannot generate the development certificate: {0}")]
    Certificate(String),
}

const JWT_CONSEQUENCE: &str = "tokens issued so far stop verifying";
const ADMIN_CONSEQUENCE: &str = "the admin key changes";
const TLS_CONSEQUENCE: &str = "certificate pins held by clients stop matching";

/// Reads the development secrets of `data_dir`, creating the folder and any missing file.
pub fn load_or_create(data_dir: &Path) -> Result<DevSecrets, DevDefaultsError> {
    create_dir(data_dir)?;
    let jwt_secret = ensure_file(
        data_dir,
        JWT_SECRET_FILE,
        true,
        JWT_CONSEQUENCE,
        || random_bytes(JWT_SECRET_BYTES),
        |b| check_len(b, JWT_SECRET_BYTES),
    )?;
    let admin_key = ensure_file(
        data_dir,
        ADMIN_KEY_FILE,
        true,
        ADMIN_CONSEQUENCE,
        || Ok(hex(&random_bytes(ADMIN_KEY_BYTES)?).into_bytes()),
        |b| parse_admin_key(b).map(drop),
    )?;
    let admin_key = parse_admin_key(&admin_key).map_err(|problem| DevDefaultsError::Damaged {
        path: data_dir.join(ADMIN_KEY_FILE),
        problem,
        consequence: ADMIN_CONSEQUENCE,
    })?;

    // The key first: a certificate without its key is useless, while a key without a
    // certificate (a crash between the two) gets a new certificate for the same key.
    let cert_path = data_dir.join(TLS_CERT_FILE);
    let key_path = data_dir.join(TLS_KEY_FILE);
    if exists(&cert_path)? && !exists(&key_path)? {
        return Err(DevDefaultsError::Damaged {
            path: cert_path,
            problem: format!("its key {TLS_KEY_FILE} is missing"),
            consequence: TLS_CONSEQUENCE,
        });
    }
    let tls_key_der = ensure_file(
        data_dir,
        TLS_KEY_FILE,
        true,
        TLS_CONSEQUENCE,
        || {
            let key =
                KeyPair::generate().map_err(|e| DevDefaultsError::Certificate(e.to_string()))?;
            Ok(key.serialize_der())
        },
        |b| {
            KeyPair::try_from(b)
                .map(drop)
                .map_err(|e| format!("not a PKCS#8 key ({e})"))
        },
    )?;
    let key = KeyPair::try_from(tls_key_der.as_slice()).map_err(|e| DevDefaultsError::Damaged {
        path: key_path,
        problem: format!("not a PKCS#8 key ({e})"),
        consequence: TLS_CONSEQUENCE,
    })?;
    let tls_cert_der = ensure_file(
        data_dir,
        TLS_CERT_FILE,
        false,
        TLS_CONSEQUENCE,
        || self_signed(&key),
        |b| check_certificate(b, &key),
    )?;
    Ok(DevSecrets {
        jwt_secret,
        admin_key,
        tls_cert_der,
        tls_key_der,
    })
}

fn create_dir(dir: &Path) -> Result<(), DevDefaultsError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|source| DevDefaultsError::CreateDir {
            path: dir.to_owned(),
            source,
        })
}

fn exists(path: &Path) -> Result<bool, DevDefaultsError> {
    path.try_exists().map_err(|source| DevDefaultsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Reads `dir/name` and checks it, or writes what `generate` makes when the file is absent.
fn ensure_file(
    dir: &Path,
    name: &str,
    private: bool,
    consequence: &'static str,
    generate: impl FnOnce() -> Result<Vec<u8>, DevDefaultsError>,
    check: impl Fn(&[u8]) -> Result<(), String>,
) -> Result<Vec<u8>, DevDefaultsError> {
    let path = dir.join(name);
    let read_checked = |path: &Path| -> Result<Option<Vec<u8>>, DevDefaultsError> {
        match fs::read(path) {
            Ok(bytes) => {
                if private {
                    check_private(path)?;
                }
                match check(&bytes) {
                    Ok(()) => Ok(Some(bytes)),
                    Err(problem) => Err(DevDefaultsError::Damaged {
                        path: path.to_owned(),
                        problem,
                        consequence,
                    }),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(DevDefaultsError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    };
    if let Some(bytes) = read_checked(&path)? {
        return Ok(bytes);
    }
    let bytes = generate()?;
    if write_new(dir, name, &bytes)? {
        return Ok(bytes);
    }
    // Another process created it first: use theirs.
    read_checked(&path)?.ok_or_else(|| DevDefaultsError::Read {
        path: path.clone(),
        source: io::Error::new(io::ErrorKind::NotFound, "vanished after being created"),
    })
}

/// A secret file must not be open to other users (issue 15: secret files were reused
/// whatever their permissions). Only the owner's bits may be set, as ssh asks of its keys.
fn check_private(path: &Path) -> Result<(), DevDefaultsError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path)
        .map_err(|source| DevDefaultsError::Read {
            path: path.to_owned(),
            source,
        })?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(DevDefaultsError::Exposed {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Writes `bytes` to `dir/name` atomically, mode 0600, unless it exists: `Ok(false)` then.
fn write_new(dir: &Path, name: &str, bytes: &[u8]) -> Result<bool, DevDefaultsError> {
    let path = dir.join(name);
    let nonce = hex(&random_bytes(8)?);
    let tmp = dir.join(format!(".{name}.tmp-{}-{nonce}", std::process::id()));
    let write_err = |source| DevDefaultsError::Write {
        path: path.clone(),
        source,
    };
    let result = (|| {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        // A hard link is a rename that never replaces an existing file.
        match fs::hard_link(&tmp, &path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            // No hard links on this file system: rename, after checking nothing is there.
            Err(_) if !path.try_exists()? => fs::rename(&tmp, &path).map(|()| true),
            Err(e) => Err(e),
        }
    })();
    // Best effort: the temporary file is gone already after a rename.
    let _ = fs::remove_file(&tmp);
    let created = result.map_err(write_err)?;
    if created {
        // Make the new directory entry durable too.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(created)
}

fn random_bytes(n: usize) -> Result<Vec<u8>, DevDefaultsError> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).map_err(|e| DevDefaultsError::Random(e.to_string()))?;
    Ok(buf)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

fn check_len(bytes: &[u8], expected: usize) -> Result<(), String> {
    if bytes.len() == expected {
        Ok(())
    } else {
        Err(format!(
            "it holds {} bytes, expected {expected}",
            bytes.len()
        ))
    }
}

fn parse_admin_key(bytes: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "it is not text".to_owned())?;
    let key = text.trim_end();
    if key.len() == 2 * ADMIN_KEY_BYTES && key.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(key.to_ascii_lowercase())
    } else {
        Err(format!("expected {} hex characters", 2 * ADMIN_KEY_BYTES))
    }
}

fn self_signed(key: &KeyPair) -> Result<Vec<u8>, DevDefaultsError> {
    let names: Vec<String> = TLS_NAMES.iter().map(|n| (*n).to_owned()).collect();
    let cert_err = |e: rcgen::Error| DevDefaultsError::Certificate(e.to_string());
    let mut params = CertificateParams::new(names).map_err(cert_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Chatwire development server");
    params.distinguished_name = dn;
    Ok(params.self_signed(key).map_err(cert_err)?.der().to_vec())
}

/// A whole DER structure (its outer length matches the file) holding `key`'s public key.
fn check_certificate(der: &[u8], key: &KeyPair) -> Result<(), String> {
    if !der_is_one_sequence(der) {
        return Err("it is not a whole DER certificate (truncated?)".into());
    }
    let public = key.public_key_raw();
    if public.is_empty() || !der.windows(public.len()).any(|w| w == public) {
        return Err(format!("it does not hold the public key of {TLS_KEY_FILE}"));
    }
    Ok(())
}

fn der_is_one_sequence(der: &[u8]) -> bool {
    let (Some(&0x30), Some(&first)) = (der.first(), der.get(1)) else {
        return false;
    };
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        let Some(len_bytes) = der.get(2..2 + n) else {
            return false;
        };
        if n == 0 || n > 4 {
            return false;
        }
        (
            len_bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b)),
            2 + n,
        )
    };
    header.checked_add(len) == Some(der.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("nested/data");
        let first = load_or_create(&data).unwrap();
        assert_eq!(first.jwt_secret.len(), JWT_SECRET_BYTES);
        assert_eq!(first.admin_key.len(), 64);
        assert!(first.admin_key.bytes().all(|b| b.is_ascii_hexdigit()));
        let second = load_or_create(&data).unwrap();
        assert_eq!(first, second);
        assert_eq!(
            fs::read(data.join(JWT_SECRET_FILE)).unwrap(),
            first.jwt_secret
        );
        // Only the four files: no temporary file left behind.
        let mut names: Vec<String> = fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["admin-key", "jwt-secret", "tls-cert.der", "tls-key.der"]
        );
        // Another folder gets other secrets.
        let other = load_or_create(&dir.path().join("other")).unwrap();
        assert_ne!(other.jwt_secret, first.jwt_secret);
        assert_ne!(other.admin_key, first.admin_key);
        assert!(!format!("{first:?}").contains(&first.admin_key));
    }

    #[cfg(unix)]
    #[test]
    fn files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        load_or_create(dir.path()).unwrap();
        for name in [JWT_SECRET_FILE, ADMIN_KEY_FILE, TLS_CERT_FILE, TLS_KEY_FILE] {
            let mode = fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
    }

    #[test]
    fn certificate_is_for_localhost_and_matches_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let s = load_or_create(dir.path()).unwrap();
        let key = KeyPair::try_from(s.tls_key_der.as_slice()).unwrap();
        check_certificate(&s.tls_cert_der, &key).unwrap();
        let has = |needle: &[u8]| s.tls_cert_der.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"localhost"));
        assert!(has(&[0x87, 4, 127, 0, 0, 1]), "IP SAN 127.0.0.1");
    }

    #[test]
    fn damaged_files_are_errors_not_regenerated() {
        let dir = tempfile::tempdir().unwrap();
        load_or_create(dir.path()).unwrap();
        let cases: [(&str, &[u8]); 5] = [
            (JWT_SECRET_FILE, b"short"),
            (JWT_SECRET_FILE, b""),
            (ADMIN_KEY_FILE, b"not hex at all"),
            (TLS_KEY_FILE, b"garbage"),
            (TLS_CERT_FILE, &[0x30, 0x82, 0x01]),
        ];
        for (name, content) in cases {
            let scratch = tempfile::tempdir().unwrap();
            for f in [JWT_SECRET_FILE, ADMIN_KEY_FILE, TLS_CERT_FILE, TLS_KEY_FILE] {
                fs::copy(dir.path().join(f), scratch.path().join(f)).unwrap();
            }
            let path = scratch.path().join(name);
            fs::write(&path, content).unwrap();
            let err = load_or_create(scratch.path()).unwrap_err();
            assert!(
                matches!(&err, DevDefaultsError::Damaged { path: p, .. } if *p == path),
                "{name}: {err}"
            );
            assert!(err.to_string().contains("delete it"), "{err}");
            assert_eq!(fs::read(&path).unwrap(), content, "{name} was rewritten");
        }
    }

    #[test]
    fn secrets_open_to_other_users_are_refused_the_certificate_is_not_secret() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::TempDir::new().unwrap();
        let data = dir.path().join("data");
        load_or_create(&data).expect("created");
        let cert = data.join(TLS_CERT_FILE);
        fs::set_permissions(&cert, fs::Permissions::from_mode(0o644)).unwrap();
        load_or_create(&data).expect("a readable certificate is fine");
        for name in [JWT_SECRET_FILE, ADMIN_KEY_FILE, TLS_KEY_FILE] {
            let path = data.join(name);
            fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
            let err = load_or_create(&data).expect_err("an exposed secret");
            assert!(
                matches!(&err, DevDefaultsError::Exposed { path: p, mode: 0o640 } if *p == path),
                "{name}: {err}"
            );
            assert!(err.to_string().contains("chmod 600"), "{err}");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        }
        load_or_create(&data).expect("private again");
    }

    #[test]
    fn admin_key_tolerates_a_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let key = "ab".repeat(32);
        let path = dir.path().join(ADMIN_KEY_FILE);
        fs::write(&path, format!("{key}\n")).unwrap();
        fs::set_permissions(
            &path,
            <fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
        )
        .unwrap();
        assert_eq!(load_or_create(dir.path()).unwrap().admin_key, key);
    }

    #[test]
    fn certificate_of_another_key_is_an_error() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        load_or_create(a.path()).unwrap();
        load_or_create(b.path()).unwrap();
        fs::copy(b.path().join(TLS_CERT_FILE), a.path().join(TLS_CERT_FILE)).unwrap();
        let err = load_or_create(a.path()).unwrap_err();
        assert!(err.to_string().contains("public key"), "{err}");
    }

    #[test]
    fn missing_certificate_is_reissued_for_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path()).unwrap();
        fs::remove_file(dir.path().join(TLS_CERT_FILE)).unwrap();
        let second = load_or_create(dir.path()).unwrap();
        assert_eq!(first.tls_key_der, second.tls_key_der);
        assert_eq!(first.jwt_secret, second.jwt_secret);
        // A certificate without its key cannot be repaired.
        fs::remove_file(dir.path().join(TLS_KEY_FILE)).unwrap();
        let err = load_or_create(dir.path()).unwrap_err();
        assert!(err.to_string().contains(TLS_KEY_FILE), "{err}");
    }

    #[test]
    fn concurrent_first_starts_agree() {
        let dir = tempfile::tempdir().unwrap();
        let results: Vec<DevSecrets> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| load_or_create(dir.path()).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(results.windows(2).all(|w| w[0] == w[1]));
    }

    #[test]
    fn der_length_check() {
        assert!(der_is_one_sequence(&[0x30, 0x00]));
        assert!(der_is_one_sequence(&[0x30, 0x02, 1, 2]));
        assert!(!der_is_one_sequence(&[0x30, 0x03, 1, 2]));
        assert!(der_is_one_sequence(&[0x30, 0x81, 0x01, 9]));
        assert!(!der_is_one_sequence(&[0x30, 0x82, 0x01]));
        assert!(!der_is_one_sequence(&[0x31, 0x00]));
        assert!(!der_is_one_sequence(&[]));
        assert_eq!(hex(&[0x00, 0xab, 0xff]), "00abff");
    }
}
