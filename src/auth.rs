//! Signatures: channel auth, user sign-in and HTTP API request signing.
//!
//! Every check is an HMAC-SHA256 keyed by the app secret, compared in constant time so a
//! client cannot learn a valid signature byte by byte from response timings.

use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Lowercase hex HMAC-SHA256 of `message` keyed by `secret`.
pub fn sign(secret: &str, message: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key size");
    mac.update(message.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Constant-time equality of two strings (length may leak, content does not).
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// Checks an auth string of the form `key:hexsignature` against `message`.
pub fn verify_auth_string(key: &str, secret: &str, message: &str, auth: &str) -> bool {
    let Some((given_key, given_sig)) = auth.split_once(':') else {
        return false;
    };
    let expected = sign(secret, message);
    // Evaluate both comparisons so timing does not reveal which part failed.
    let key_ok = constant_time_eq(given_key, key);
    let sig_ok = constant_time_eq(given_sig, &expected);
    key_ok & sig_ok
}

/// The string a private, encrypted or presence channel subscription signs.
pub fn channel_auth_message(socket_id: &str, channel: &str, channel_data: Option<&str>) -> String {
    match channel_data {
        Some(data) => format!("{socket_id}:{channel}:{data}"),
        None => format!("{socket_id}:{channel}"),
    }
}

/// The string a user sign-in signs.
pub fn signin_message(socket_id: &str, user_data: &str) -> String {
    format!("{socket_id}::user::{user_data}")
}

/// The auth string a server SDK would produce: `key:hex`.
pub fn auth_string(key: &str, secret: &str, message: &str) -> String {
    format!("{key}:{}", sign(secret, message))
}

/// Hex MD5 of an HTTP API body, as `body_md5` carries it.
pub fn body_md5(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

/// The string an HTTP API request signs: `METHOD\nPATH\nQUERY` where QUERY is every parameter
/// but `auth_signature`, keys lowercased and sorted, values unescaped, joined by `&`.
pub fn request_string_to_sign(method: &str, path: &str, params: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, &str)> = params
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("auth_signature"))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
        .collect();
    pairs.sort();
    let query = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    format!("{method}\n{path}\n{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "278d425bdf160c739803";
    const SECRET: &str = "7ad3773142a6692b25b8";

    #[test]
    fn private_channel_vector() {
        assert_eq!(
            sign(
                SECRET,
                &channel_auth_message("1234.1234", "private-foobar", None)
            ),
            "58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
        );
    }

    #[test]
    fn signin_vector() {
        assert_eq!(
            sign(SECRET, &signin_message("1234.1234", r#"{"id":"12345"}"#)),
            "4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba"
        );
    }

    #[test]
    fn presence_vector() {
        let msg = channel_auth_message(
            "1234.1234",
            "presence-foobar",
            Some(r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#),
        );
        assert_eq!(
            sign(SECRET, &msg),
            "31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80"
        );
    }

    #[test]
    fn http_api_vector() {
        let body = r#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        let md5 = body_md5(body.as_bytes());
        assert_eq!(md5, "ec365a775a4cd0599faeb73354201b6f");
        let params = vec![
            ("auth_key".to_owned(), KEY.to_owned()),
            ("auth_timestamp".to_owned(), "1353088179".to_owned()),
            ("auth_version".to_owned(), "1.0".to_owned()),
            ("body_md5".to_owned(), md5),
            ("auth_signature".to_owned(), "ignored".to_owned()),
        ];
        let s = request_string_to_sign("POST", "/apps/3/events", &params);
        assert_eq!(
            s,
            "POST\n/apps/3/events\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f"
        );
        assert_eq!(
            sign(SECRET, &s),
            "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        );
    }

    #[test]
    fn auth_string_checks_key_and_signature() {
        let msg = channel_auth_message("1.1", "private-a", None);
        let good = auth_string(KEY, SECRET, &msg);
        assert!(verify_auth_string(KEY, SECRET, &msg, &good));
        assert!(!verify_auth_string("other", SECRET, &msg, &good));
        assert!(!verify_auth_string(KEY, SECRET, &msg, "nocolon"));
        assert!(!verify_auth_string(KEY, SECRET, &msg, &format!("{KEY}:00")));
    }
}
