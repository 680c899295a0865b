//! `enclave keygen` as a user runs it: the key file it writes, the public key it prints, and
//! its refusals.

use std::path::{Path, PathBuf};

use enclave_crypto::{SigningKey, VerifyingKey};

#[allow(
    dead_code,
    reason = "helpers shared by the CLI test files; this one needs some"
)]
use crate::common;

use common::{hung_up_pipe, run as enclave, run_into};

/// A fresh directory for one test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("enclave-keygen-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn keygen(out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["keygen", "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    enclave(&args, b"")
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn writes_a_private_key_file_and_prints_its_public_key() {
    let dir = TempDir::new("writes");
    let key_path = dir.path("server.key");
    let output = keygen(&key_path, &[]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.starts_with("-----BEGIN PUBLIC KEY-----\n"),
        "{stdout}"
    );
    assert!(stdout.ends_with("-----END PUBLIC KEY-----\n"), "{stdout}");

    let text = std::fs::read_to_string(&key_path).unwrap();
    assert!(text.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{text}");
    assert!(
        !stdout.contains(&text[28..60]),
        "the private key leaked to stdout"
    );
    let key = SigningKey::from_pkcs8_pem_file(&key_path).unwrap();
    // The printed public key is the written key's.
    assert_eq!(key.verifying_key().to_spki_pem(), stdout);
    assert_eq!(
        &VerifyingKey::from_spki_pem(&stdout).unwrap(),
        key.verifying_key()
    );
    #[cfg(unix)]
    assert_eq!(mode(&key_path), 0o600);
    assert_eq!(dir.entries(), ["server.key"]);
}

#[test]
fn never_replaces_a_key_without_force() {
    let dir = TempDir::new("force");
    let key_path = dir.path("server.key");
    assert_eq!(keygen(&key_path, &[]).status.code(), Some(0));
    let first = std::fs::read(&key_path).unwrap();

    let refused = keygen(&key_path, &[]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(refused.stdout.is_empty());
    let stderr = String::from_utf8(refused.stderr).unwrap();
    assert!(
        stderr.contains("server.key") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&key_path).unwrap(),
        first,
        "the key was changed"
    );

    // A world-readable file in the way is replaced by an owner-only one.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let replaced = keygen(&key_path, &["--force"]);
    assert_eq!(replaced.status.code(), Some(0), "{replaced:?}");
    assert_ne!(std::fs::read(&key_path).unwrap(), first);
    let key = SigningKey::from_pkcs8_pem_file(&key_path).unwrap();
    assert_eq!(
        key.verifying_key().to_spki_pem(),
        String::from_utf8(replaced.stdout).unwrap()
    );
    #[cfg(unix)]
    assert_eq!(mode(&key_path), 0o600);
    assert_eq!(dir.entries(), ["server.key"], "a temporary file was left");
}

#[test]
fn usage_and_io_errors_exit_2_with_a_message() {
    let dir = TempDir::new("errors");
    let missing = enclave(&["keygen"], b"");
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--out"));

    let nowhere = dir.path("no-such-dir").join("server.key");
    let output = keygen(&nowhere, &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.starts_with("enclave keygen: ") && stderr.contains("no-such-dir"),
        "{stderr}"
    );
}

#[test]
fn a_closed_standard_output_is_an_error_without_a_message() {
    let dir = TempDir::new("pipe");
    let key_path = dir.path("server.key");
    let out = key_path.to_str().unwrap();
    let output = run_into(
        &["keygen", "--out", out],
        b"",
        hung_up_pipe(),
        std::process::Stdio::piped(),
    );
    // The key was written, but its public key could not be printed: not a success.
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stderr.is_empty(), "{output:?}");
    assert!(SigningKey::from_pkcs8_pem_file(&key_path).is_ok());
}
