//! Webhooks: a JSON POST to every configured URL when a table starts failing and when it
//! recovers: dapsync's own event, or a message in Slack's or Microsoft Teams' format. Delivery is best effort: a failed POST is logged, never fatal, never retried.
//! Webhook URLs often embed a secret (Slack, Teams), so logs name only their host.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::Url;
use serde::Serialize;

use crate::config::{WebhookConfig, WebhookFormat};
use crate::status::LastError;
use crate::table::TableId;

/// What happened to the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookKind {
    /// Its run failed after it had been working.
    Failing,
    /// Its run succeeded after it had been failing.
    Recovered,
}

/// The JSON body of a webhook POST.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebhookEvent {
    pub event: WebhookKind,
    pub namespace: String,
    pub table: String,
    /// The error that made the table fail (for `recovered`: the one it recovered from).
    pub error_type: String,
    /// The DAP error uuid, for Instructure support.
    pub uuid: Option<String>,
    pub message: String,
    /// When the event happened.
    pub at: DateTime<Utc>,
}

impl WebhookEvent {
    /// An event about `table`, with the error it concerns.
    pub fn new(event: WebhookKind, table: &TableId, error: &LastError) -> Self {
        Self {
            event,
            namespace: table.namespace.clone(),
            table: table.table.clone(),
            error_type: error.error_type.clone(),
            uuid: error.uuid.clone(),
            message: error.message.clone(),
            at: Utc::now(),
        }
    }
}

impl WebhookEvent {
    /// The body of the POST in `format`.
    pub fn body(&self, format: WebhookFormat) -> serde_json::Value {
        let table = TableId::new(&self.namespace, &self.table);
        let uuid = self.uuid.as_deref().unwrap_or("-");
        let at = self.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let headline = match self.event {
            WebhookKind::Failing => format!("dapsync: {table} is failing"),
            WebhookKind::Recovered => format!("dapsync: {table} has recovered"),
        };
        let error = match self.event {
            WebhookKind::Failing => "Error",
            WebhookKind::Recovered => "Was failing with",
        };
        match format {
            WebhookFormat::Json => serde_json::json!(self),
            WebhookFormat::Slack => {
                let icon = match self.event {
                    WebhookKind::Failing => ":red_circle:",
                    WebhookKind::Recovered => ":large_green_circle:",
                };
                let details = format!(
                    "*{error}:* {} (DAP uuid `{uuid}`)\n{}\n_{at}_",
                    self.error_type,
                    slack_escape(&self.message)
                );
                serde_json::json!({
                    "text": format!("{icon} {headline}: {}", self.error_type),
                    "blocks": [
                        {"type": "section", "text": {"type": "mrkdwn", "text": format!("{icon} *{}*", slack_escape(&headline))}},
                        {"type": "section", "text": {"type": "mrkdwn", "text": details}}
                    ]
                })
            }
            WebhookFormat::Teams => {
                let color = match self.event {
                    WebhookKind::Failing => "Attention",
                    WebhookKind::Recovered => "Good",
                };
                serde_json::json!({
                    "type": "message",
                    "summary": headline,
                    "attachments": [{
                        "contentType": "application/vnd.microsoft.card.adaptive",
                        "content": {
                            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                            "type": "AdaptiveCard",
                            "version": "1.4",
                            "body": [
                                {"type": "TextBlock", "text": headline, "weight": "Bolder", "size": "Medium", "color": color, "wrap": true},
                                {"type": "FactSet", "facts": [
                                    {"title": error, "value": self.error_type},
                                    {"title": "DAP uuid", "value": uuid},
                                    {"title": "At", "value": at}
                                ]},
                                {"type": "TextBlock", "text": self.message, "wrap": true}
                            ]
                        }
                    }]
                })
            }
        }
    }
}

/// Text for Slack's mrkdwn: `&`, `<` and `>` escaped, as Slack asks.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Webhooks that cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhooks.urls[{index}] is not a valid URL")]
    Url {
        index: usize,
        #[source]
        source: <Url as std::str::FromStr>::Err,
    },
    #[error("cannot build the webhook HTTP client")]
    Client(#[source] reqwest::Error),
}

/// The configured webhooks (possibly none). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Webhooks {
    urls: Arc<[Url]>,
    format: WebhookFormat,
    /// `None` when there is no URL: nothing to build a client for.
    http: Option<reqwest::Client>,
}

impl Webhooks {
    /// Webhooks for the configured URLs, each POST limited by the configured timeout.
    pub fn new(config: &WebhookConfig) -> Result<Self, WebhookError> {
        let urls = config
            .urls
            .iter()
            .enumerate()
            .map(|(index, url)| {
                Url::parse(url).map_err(|source| WebhookError::Url { index, source })
            })
            .collect::<Result<Arc<[Url]>, _>>()?;
        let http = if urls.is_empty() {
            None
        } else {
            Some(client(config.timeout.0)?)
        };
        Ok(Self {
            urls,
            format: config.format,
            http,
        })
    }

    /// No webhook at all.
    pub fn none() -> Self {
        Self {
            urls: Arc::new([]),
            format: WebhookFormat::Json,
            http: None,
        }
    }

    /// Whether there is no URL to send to.
    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    /// POSTs `event` to every URL at once and waits for the answers (each within the timeout).
    pub async fn send(&self, event: &WebhookEvent) {
        let Some(http) = &self.http else {
            return;
        };
        let body = &event.body(self.format);
        let posts = self.urls.iter().map(|url| async move {
            let host = url.host_str().unwrap_or("-");
            match http.post(url.clone()).json(body).send().await {
                Ok(answer) if answer.status().is_success() => {
                    tracing::debug!(host, event = ?event.event, table = %event.table, "webhook delivered");
                }
                Ok(answer) => {
                    tracing::warn!(host, status = answer.status().as_u16(), event = ?event.event, table = %event.table, "webhook refused");
                }
                Err(error) => {
                    tracing::warn!(host, error = %error.without_url(), event = ?event.event, table = %event.table, "webhook not delivered");
                }
            }
        });
        futures_util::future::join_all(posts).await;
    }
}

fn client(timeout: Duration) -> Result<reqwest::Client, WebhookError> {
    crate::dap::http_client_builder()
        .timeout(timeout)
        .build()
        .map_err(WebhookError::Client)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HumanDuration, WebhookFormat};

    #[test]
    fn the_body_has_the_documented_shape() {
        let error = LastError {
            error_type: "ProcessingError".into(),
            uuid: Some("0f8e-uuid".into()),
            message: "canvas.courses: DAP request failed".into(),
            at: Utc::now(),
        };
        let event = WebhookEvent::new(
            WebhookKind::Failing,
            &TableId::new("canvas", "courses"),
            &error,
        );
        let json = serde_json::to_value(&event).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(
            keys,
            [
                "event",
                "namespace",
                "table",
                "error_type",
                "uuid",
                "message",
                "at"
            ]
        );
        assert_eq!(json["event"], "failing");
        assert_eq!(json["table"], "courses");
        assert_eq!(json["uuid"], "0f8e-uuid");
    }

    #[test]
    fn slack_and_teams_get_messages_in_their_formats() {
        let error = LastError {
            error_type: "ProcessingError".into(),
            uuid: Some("0f8e-uuid".into()),
            message: "canvas.courses: job <failed> & gave up".into(),
            at: Utc::now(),
        };
        let id = TableId::new("canvas", "courses");
        let failing = WebhookEvent::new(WebhookKind::Failing, &id, &error);
        let slack = failing.body(WebhookFormat::Slack);
        assert_eq!(
            slack["text"],
            ":red_circle: dapsync: canvas.courses is failing: ProcessingError"
        );
        let details = slack["blocks"][1]["text"]["text"].as_str().unwrap();
        assert!(details.contains("`0f8e-uuid`"), "{details}");
        assert!(
            details.contains("job &lt;failed&gt; &amp; gave up"),
            "{details}"
        );
        let recovered = WebhookEvent::new(WebhookKind::Recovered, &id, &error);
        let teams = recovered.body(WebhookFormat::Teams);
        assert_eq!(teams["type"], "message");
        let card = &teams["attachments"][0];
        assert_eq!(
            card["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        let body = &card["content"]["body"];
        assert_eq!(body[0]["text"], "dapsync: canvas.courses has recovered");
        assert_eq!(body[0]["color"], "Good");
        assert_eq!(body[1]["facts"][0]["value"], "ProcessingError");
        assert_eq!(body[2]["text"], error.message);
        assert_eq!(
            failing.body(WebhookFormat::Json),
            serde_json::to_value(&failing).unwrap()
        );
    }

    #[test]
    fn urls_are_checked_and_none_means_no_client() {
        let config = |urls: &[&str]| WebhookConfig {
            urls: urls.iter().map(|u| u.to_string()).collect(),
            timeout: HumanDuration(Duration::from_secs(1)),
            format: WebhookFormat::Json,
        };
        let none = Webhooks::new(&config(&[])).unwrap();
        assert!(none.is_empty() && none.http.is_none());
        let some = Webhooks::new(&config(&["https://hooks.example/T0/B0/secret"])).unwrap();
        assert!(!some.is_empty());
        let error = Webhooks::new(&config(&["https://ok.example", "not a url"])).unwrap_err();
        assert_eq!(error.to_string(), "webhooks.urls[1] is not a valid URL");
    }
}
