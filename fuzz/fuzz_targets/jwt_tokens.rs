//! Fuzzes the checking of JSON Web Tokens sent as MQTT passwords: any password either is
//! not token-shaped, or is checked and refused (none is signed with the fuzzer's key),
//! without panicking; a token signed with the key and carrying any claims either passes
//! with rules that parse, or is refused.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use strata_frontend::security::jwt::{JwtConfig, JwtVerifier, looks_like_token};

const SECRET: &[u8] = b"a secret of at least thirty-two bytes";

fn verifier() -> &'static JwtVerifier {
    static V: OnceLock<JwtVerifier> = OnceLock::new();
    V.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("strata-fuzz-jwt-{}", std::process::id()));
        std::fs::write(&path, SECRET).expect("temp file");
        let config: JwtConfig = serde_json::from_value(serde_json::json!({
            "algorithm": "HS256",
            "secret_file": path,
            "max_acl_rules": 8,
        }))
        .expect("config");
        JwtVerifier::new(config).expect("keys load")
    })
}

fuzz_target!(|data: &[u8]| {
    let v = verifier();
    if looks_like_token(data)
        && let Ok(text) = std::str::from_utf8(data)
    {
        assert!(v.verify(text, None).is_err(), "a token the fuzzer could not sign");
    }
    // Claims of the fuzzer's choosing, signed with the key.
    if let Ok(claims) = serde_json::from_slice::<serde_json::Value>(data) {
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET),
        );
        if let Ok(token) = token
            && let Ok(grant) = v.verify(&token, None)
        {
            assert!(!grant.username.is_empty());
            assert!(grant.rules.len() <= 8);
        }
    }
});
