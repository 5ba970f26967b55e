//! The admin API over HTTP: one request, its JSON answer, and the API's JSON errors turned
//! into one-line failures (`not_found: no session for client `x``).

use anyhow::{Context, anyhow, bail};
use reqwest::{Method, Url};
use serde_json::Value;

/// A client of one node's admin API.
#[derive(Debug)]
pub struct AdminClient {
    base: Url,
    http: reqwest::Client,
}

impl AdminClient {
    /// A client of the node whose admin API is at `base` (`http://host:9180`).
    pub fn new(base: &str, token: Option<&str>) -> anyhow::Result<Self> {
        let base = Url::parse(base).with_context(|| format!("`{base}` is not a URL"))?;
        if !matches!(base.scheme(), "http" | "https") {
            bail!("`{base}` is not an http:// URL");
        }
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .context("the admin token is not a valid header value")?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .default_headers(headers)
            .build()
            .context("cannot build the HTTP client")?;
        Ok(AdminClient { base, http })
    }

    /// The URL of `/api/v1/<segments...>?<query>`; each segment is percent-encoded whole
    /// (a topic's `/` becomes `%2F`), empty query values are left out.
    pub fn url(&self, segments: &[&str], query: &[(&str, Option<String>)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(["api", "v1"]).extend(segments);
        }
        let present: Vec<(&str, &String)> = query
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (*k, v)))
            .collect();
        if !present.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in present {
                pairs.append_pair(k, v);
            }
        }
        url
    }

    /// Sends one request; the JSON answer (`null` for 204), or the API's error.
    pub async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self.http.request(method.clone(), url.clone());
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the admin API at {}", self.base))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("{method} {url}: answer cut short"))?;
        if status.is_success() {
            if bytes.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&bytes)
                .with_context(|| format!("{method} {url}: answer is not JSON"));
        }
        let error: Option<Value> = serde_json::from_slice(&bytes).ok();
        let code = error.as_ref().and_then(|e| e["code"].as_str());
        let message = error.as_ref().and_then(|e| e["message"].as_str());
        match (code, message) {
            (Some(code), Some(message)) => Err(anyhow!("{code}: {message}")),
            _ => Err(anyhow!(
                "{method} {url}: HTTP {status}: {}",
                String::from_utf8_lossy(&bytes)
            )),
        }
    }

    /// `GET`.
    pub async fn get(
        &self,
        segments: &[&str],
        query: &[(&str, Option<String>)],
    ) -> anyhow::Result<Value> {
        self.call(Method::GET, self.url(segments, query), None)
            .await
    }

    /// The items of a paged listing from `cursor` on, following `next_cursor` until `max`
    /// items or the last page.
    pub async fn get_all(
        &self,
        segments: &[&str],
        query: &[(&str, Option<String>)],
        mut cursor: Option<String>,
        max: usize,
    ) -> anyhow::Result<Value> {
        let mut items = Vec::new();
        let total = loop {
            let mut q = query.to_vec();
            q.push(("cursor", cursor.clone()));
            let want = max.saturating_sub(items.len()).clamp(1, 1000);
            q.push(("limit", Some(want.to_string())));
            let page = self.get(segments, &q).await?;
            items.extend(page["items"].as_array().cloned().unwrap_or_default());
            cursor = page["next_cursor"].as_str().map(str::to_owned);
            if cursor.is_none() || items.len() >= max {
                break page["total"].clone();
            }
        };
        Ok(serde_json::json!({"items": items, "next_cursor": cursor, "total": total}))
    }
}
