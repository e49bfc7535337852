//! `pushi trigger`: one event through a running server's Pusher HTTP API, signed with the
//! app's secret exactly as a Pusher server SDK signs it.

use clap::Args;

use super::remote::Remote;
use crate::auth;
use crate::clock::now_unix;
use crate::config::Config;

#[derive(Debug, Args)]
pub struct Trigger {
    #[command(flatten)]
    pub remote: Remote,
    /// A channel to publish on (repeat for several)
    #[arg(long = "channel", required = true)]
    pub channels: Vec<String>,
    /// The event's name
    #[arg(long)]
    pub event: String,
    /// The event's data, sent as it is written (clients parse JSON, as with Pusher)
    #[arg(long)]
    pub data: String,
    /// A socket id that must not receive it
    #[arg(long)]
    pub socket_id: Option<String>,
}

pub async fn run(config: Config, args: Trigger) -> anyhow::Result<()> {
    let app = args.remote.credentials(&config).await?;
    let path = format!("/apps/{}/events", app.id);
    let mut event = serde_json::json!({
        "name": args.event,
        "channels": args.channels,
        "data": args.data,
    });
    if let Some(socket_id) = &args.socket_id {
        event["socket_id"] = socket_id.clone().into();
    }
    let body = event.to_string();
    let mut params = vec![
        ("auth_key".to_owned(), app.key.clone()),
        ("auth_timestamp".to_owned(), now_unix().to_string()),
        ("auth_version".to_owned(), "1.0".to_owned()),
        ("body_md5".to_owned(), auth::body_md5(body.as_bytes())),
    ];
    let signature = auth::sign(
        &app.secret,
        &auth::request_string_to_sign("POST", &path, &params),
    );
    params.push(("auth_signature".to_owned(), signature));
    let url = format!("{}{path}", args.remote.http_base(&config));
    // The operator's own server: no outbound policy applies (it may well be on loopback).
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .user_agent(concat!("pushi/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| anyhow::anyhow!("cannot build an HTTP client: {e}"))?;
    let response = client
        .post(&url)
        .query(&params)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach {url}: {e}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or(text);
        anyhow::bail!("the server refused the event ({status}): {message}");
    }
    println!("{text}");
    Ok(())
}
