//! Reading the key material an app is configured with: VAPID private keys, APNs `.p8` auth
//! keys, APNs client certificates and their keys.
//!
//! One reader per kind, used both when a setting is written (so a bad key is refused at once,
//! with the setting named, instead of failing every delivery later) and when a delivery uses
//! it. Pure: no I/O, no state; the parsing itself is the `p256`, `rustls-pki-types` and
//! `rustls-webpki` crates'.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::SecretKey;
use p256::ecdsa::SigningKey;
use p256::pkcs8::DecodePrivateKey as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// PEM pasted into an environment variable or a one-line form field often has its line breaks
/// written as `\n`: read them as line breaks.
fn unescape_newlines(pem: &str) -> String {
    if !pem.contains('\n') && pem.contains("\\n") {
        pem.replace("\\n", "\n")
    } else {
        pem.to_owned()
    }
}

/// Base64url, tolerant of padding, whitespace and the standard alphabet (keys pasted from
/// other tools).
pub fn decode_base64url(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let cleaned: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '=')
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    URL_SAFE_NO_PAD.decode(cleaned)
}

/// Reads a VAPID private key: PKCS#8 PEM, SEC1 PEM, the raw 32-byte scalar in base64url (or
/// base64, what Pushi stores), or PKCS#8/SEC1 DER in base64url (as pywebpush accepts).
pub fn vapid_key(text: &str) -> Result<SecretKey, String> {
    let text = unescape_newlines(text);
    let text = text.trim();
    let invalid = |why: &str| format!("invalid VAPID private key: {why}");
    if text.starts_with("-----BEGIN") {
        return if text.contains("-----BEGIN EC PRIVATE KEY-----") {
            SecretKey::from_sec1_pem(text).map_err(|_| invalid("unreadable SEC1 PEM"))
        } else if text.contains("-----BEGIN PRIVATE KEY-----") {
            SecretKey::from_pkcs8_pem(text)
                .map_err(|_| invalid("unreadable PKCS#8 PEM (is it a P-256 key?)"))
        } else {
            Err(invalid(
                "PEM must be a PRIVATE KEY (PKCS#8) or EC PRIVATE KEY (SEC1)",
            ))
        };
    }
    let bytes = decode_base64url(text).map_err(|_| invalid("neither PEM nor base64url"))?;
    if bytes.len() == 32 {
        SecretKey::from_slice(&bytes).map_err(|_| invalid("not a P-256 private scalar"))
    } else {
        SecretKey::from_pkcs8_der(&bytes)
            .or_else(|_| SecretKey::from_sec1_der(&bytes))
            .map_err(|_| invalid("expected 32 bytes (raw scalar) or DER"))
    }
}

/// Reads an APNs `.p8` key: PKCS#8 PEM as Apple issues it, or SEC1 (`EC PRIVATE KEY`) PEM.
pub fn apn_auth_key(pem: &str) -> Result<SigningKey, String> {
    let pem = unescape_newlines(pem);
    let pem = pem.trim();
    SigningKey::from_pkcs8_pem(pem)
        .or_else(|_| SecretKey::from_sec1_pem(pem).map(SigningKey::from))
        .map_err(|_| "invalid APN auth key: expected the .p8 P-256 private key (PEM)".to_owned())
}

/// Checks an APNs client certificate: PEM `CERTIFICATE` blocks, the first an X.509
/// certificate `webpki` can read.
pub fn apn_certificate(pem: &str) -> Result<(), String> {
    let pem = unescape_newlines(pem);
    let certificates: Result<Vec<CertificateDer>, _> =
        CertificateDer::pem_slice_iter(pem.as_bytes()).collect();
    match certificates.as_deref() {
        Ok([first, ..]) => webpki::EndEntityCert::try_from(first)
            .map(|_| ())
            .map_err(|e| format!("not a readable X.509 certificate: {e}")),
        _ => Err("expected a PEM certificate (-----BEGIN CERTIFICATE-----)".into()),
    }
}

/// Checks an APNs client certificate's private key: one PEM private key (PKCS#8, PKCS#1 RSA
/// or SEC1 EC) that rustls can sign with, as the TLS client will.
pub fn apn_client_key(pem: &str) -> Result<(), String> {
    let pem = unescape_newlines(pem);
    let key = PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|_| "expected a PEM private key (PKCS#8, RSA or EC)".to_owned())?;
    rustls::crypto::ring::sign::any_supported_type(&key)
        .map(|_| ())
        .map_err(|e| format!("not a usable private key: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_key_material_is_refused() {
        assert!(vapid_key("not a key").is_err());
        assert!(vapid_key(&URL_SAFE_NO_PAD.encode([7u8; 32])).is_ok());
        assert!(apn_auth_key("not a key").is_err());
        assert!(
            apn_certificate("-----BEGIN CERTIFICATE-----\nxx\n-----END CERTIFICATE-----").is_err()
        );
        assert!(apn_certificate("plain text").is_err());
        assert!(apn_client_key("plain text").is_err());
        assert!(
            apn_client_key("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----").is_err()
        );
    }
}
