//! TLS with rustls: loading the configured PEM files, and making a development certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why TLS could not be set up; each names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS certificate {path}: {reason}")]
    Cert { path: PathBuf, reason: String },
    #[error("TLS private key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("TLS certificate {cert} and key {key} do not form a usable pair: {reason}")]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("cannot generate a certificate: {0}")]
    Generate(String),
}

/// The certificate chain and private key files of a server.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// Reads both PEM files into a rustls server configuration (ring crypto, TLS 1.2 and 1.3).
    pub fn server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| TlsError::Cert {
                path: self.cert.clone(),
                reason: e.to_string(),
            })?;
        if certs.is_empty() {
            return Err(TlsError::Cert {
                path: self.cert.clone(),
                reason: "no CERTIFICATE block found".into(),
            });
        }
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| TlsError::Key {
            path: self.key.clone(),
            reason: e.to_string(),
        })?;
        let pair_error = |reason: String| TlsError::Pair {
            cert: self.cert.clone(),
            key: self.key.clone(),
            reason,
        };
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| pair_error(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| pair_error(e.to_string()))
    }
}

/// A client configuration that trusts exactly the certificates in the PEM file `ca` (for a
/// client of our own server with a development certificate: the bench, the tests).
pub fn client_config_trusting(ca: &Path) -> Result<rustls::ClientConfig, TlsError> {
    let cert_error = |reason: String| TlsError::Cert {
        path: ca.to_owned(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| cert_error(e.to_string()))? {
        roots
            .add(cert.map_err(|e| cert_error(e.to_string()))?)
            .map_err(|e| cert_error(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(cert_error("no CERTIFICATE block found".into()));
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| cert_error(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Writes a self-signed certificate for `localhost`, `127.0.0.1` and `::1` into `dir` as
/// `cert.pem` and `key.pem` (the key readable by its owner only). Existing files are kept unless
/// `force` is set. Returns the paths, and whether new files were written.
pub fn generate_dev_cert(dir: &Path, force: bool) -> Result<(TlsFiles, bool), TlsError> {
    let files = TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    if !force && files.cert.exists() && files.key.exists() {
        return Ok((files, false));
    }
    let names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    let certified =
        rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Generate(e.to_string()))?;
    std::fs::create_dir_all(dir).map_err(|e| TlsError::Write {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    write_file(&files.cert, certified.cert.pem().as_bytes(), 0o644)?;
    write_file(
        &files.key,
        certified.signing_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    Ok((files, true))
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |e: std::io::Error| TlsError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    file.write_all(contents).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certificate_loads() {
        let dir = tempfile::tempdir().unwrap();
        let (files, written) = generate_dev_cert(dir.path(), false).unwrap();
        assert!(written);
        files.server_config().expect("generated pair is usable");
        let (_, again) = generate_dev_cert(dir.path(), false).unwrap();
        assert!(!again, "existing files are kept");
    }

    #[test]
    fn garbage_key_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let (files, _) = generate_dev_cert(dir.path(), false).unwrap();
        std::fs::write(&files.key, "not a key").unwrap();
        let err = files.server_config().unwrap_err().to_string();
        assert!(err.contains("key.pem"), "{err}");
    }
}
