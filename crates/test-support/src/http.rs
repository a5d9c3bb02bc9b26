//! Plain HTTP GETs of loopback listeners: the operator's admin port and a
//! test's Prometheus server.

use std::time::Duration;

/// How long one GET may take: a loopback listener answers in milliseconds,
/// so a request still pending after this is a hung process.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP answer: the status code and the body as text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

/// GETs `url` (plain `http://`), and returns the status and body whatever
/// the status is; `Err` only when there was no HTTP answer at all
/// (connection refused, timeout, a body that is not UTF-8).
///
/// The request runs on tokio's blocking pool: `ureq` is a blocking client.
///
/// # Errors
///
/// What went wrong, naming the URL.
pub async fn http_get(url: &str) -> Result<HttpResponse, String> {
    let owned = url.to_owned();
    tokio::task::spawn_blocking(move || get_blocking(&owned))
        .await
        .map_err(|e| format!("GET {url}: the request task failed: {e}"))?
}

fn get_blocking(url: &str) -> Result<HttpResponse, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        // A 503 from /readyz is an answer, not a failure.
        .http_status_as_error(false)
        // Loopback only: never through a proxy named in the environment.
        .proxy(None)
        .timeout_global(Some(REQUEST_TIMEOUT))
        .build()
        .into();
    let mut response = agent
        .get(url)
        .call()
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("GET {url}: reading the body: {e}"))?;
    Ok(HttpResponse { status, body })
}
