//! Fuzzes the agent frontend's MCP endpoint decoding: any body decodes to a request, a
//! notification or a JSON-RPC error, never a panic; a tool call plans to a request of the
//! agent API whose path and query stay within `/v1/` and carry only URI-safe characters
//! (every name from the caller percent-encoded).
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_agent::mcp::{Decoded, decode, plan};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let version = match pick % 4 {
        0 => None,
        1 => Some("2026-07-28"),
        2 => Some("2025-11-25"),
        _ => Some("bogus"),
    };
    let Ok(Decoded::Request { method, params, .. }) = decode(body, version) else {
        return;
    };
    if method != "tools/call" {
        return;
    }
    if let Ok(planned) = plan(params) {
        let path = planned.path.as_str();
        assert!(path.starts_with("/v1/"), "{path}");
        let route = path.split('?').next().unwrap_or_default();
        assert!(!route.split('/').any(|s| s == ".." || s == "."), "{path}");
        assert!(
            path.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~%/?=&".contains(&b)),
            "{path}"
        );
    }
});
