//! `strata admin users|acl|ban`: users, ACL rules and bans of a running node. Passwords
//! are read from standard input (or `--password`, which other users of the machine may
//! see in the process list) and sent once; the node keeps only their argon2id hash.

use std::io::Read;

use anyhow::Context;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::client::AdminClient;
use super::table::render;
use super::{Shown, done};

#[derive(Subcommand)]
pub enum UsersCommand {
    /// Every user (never a password).
    List,
    /// Create a user or change its password.
    Add {
        name: String,
        /// The password (default: read from standard input).
        #[arg(long)]
        password: Option<String>,
    },
    /// Remove a user.
    Delete { name: String },
    /// Print the argon2id hash of a password read from standard input, for
    /// `[[auth.users]] password_hash` (no node needed).
    Hash,
}

#[derive(Subcommand)]
pub enum AclCommand {
    /// The configured rules and the admin API's, in evaluation order.
    Show,
    /// Replace the admin API's rules with those of a JSON file (an array of rules, or
    /// `{"rules": [...]}`; `-` reads standard input).
    Set { file: String },
}

#[derive(Subcommand)]
pub enum BanCommand {
    /// Bans in force.
    List,
    /// Ban a client id, a username or an address (or network).
    Add {
        /// `client_id`, `username` or `ip`.
        kind: String,
        value: String,
        /// For this many seconds (default: until removed).
        #[arg(long = "for")]
        for_secs: Option<u64>,
        /// Why (shown in listings).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Lift a ban.
    Remove { kind: String, value: String },
}

fn read_stdin() -> anyhow::Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("cannot read standard input")?;
    Ok(text.trim_end_matches(['\r', '\n']).to_string())
}

pub async fn users(c: &AdminClient, command: UsersCommand) -> anyhow::Result<Shown> {
    Ok(match command {
        UsersCommand::List => (
            c.get(&["auth", "users"], &[]).await?,
            Box::new(|v| {
                render(
                    v.as_array().map_or(&[][..], Vec::as_slice),
                    &[("USER", "/name"), ("SOURCE", "/source")],
                )
            }),
        ),
        UsersCommand::Add { name, password } => {
            let password = match password {
                Some(p) => p,
                None => read_stdin()?,
            };
            let url = c.url(&["auth", "users", &name], &[]);
            c.call(Method::PUT, url, Some(json!({ "password": password })))
                .await?;
            (Value::Null, done(format!("user {name} set")))
        }
        UsersCommand::Delete { name } => {
            let url = c.url(&["auth", "users", &name], &[]);
            c.call(Method::DELETE, url, None).await?;
            (Value::Null, done(format!("user {name} removed")))
        }
        UsersCommand::Hash => {
            let password = read_stdin()?;
            let hash = strata_frontend::security::password::hash(&password)
                .map_err(|e| anyhow::anyhow!(e))?;
            (Value::String(hash.clone()), done(hash))
        }
    })
}

pub async fn acl(c: &AdminClient, command: AclCommand) -> anyhow::Result<Shown> {
    let table = |v: &Value| {
        let mut rows: Vec<Value> = Vec::new();
        for (source, key) in [("config", "configured"), ("api", "rules")] {
            for r in v[key].as_array().cloned().unwrap_or_default() {
                let mut r = r;
                r["source"] = json!(source);
                rows.push(r);
            }
        }
        render(
            &rows,
            &[
                ("SOURCE", "/source"),
                ("PERMISSION", "/permission"),
                ("ACTION", "/action"),
                ("TOPIC", "/topic"),
                ("USER", "/username"),
                ("CLIENT", "/client_id"),
                ("IP", "/ip"),
            ],
        )
    };
    Ok(match command {
        AclCommand::Show => (c.get(&["auth", "acl"], &[]).await?, Box::new(table)),
        AclCommand::Set { file } => {
            let text = if file == "-" {
                read_stdin()?
            } else {
                std::fs::read_to_string(&file).with_context(|| format!("cannot read {file}"))?
            };
            let parsed: Value =
                serde_json::from_str(&text).with_context(|| format!("{file} is not JSON"))?;
            let body = if parsed.is_array() {
                json!({ "rules": parsed })
            } else {
                parsed
            };
            let url = c.url(&["auth", "acl"], &[]);
            (c.call(Method::PUT, url, Some(body)).await?, Box::new(table))
        }
    })
}

pub async fn ban(c: &AdminClient, command: BanCommand) -> anyhow::Result<Shown> {
    Ok(match command {
        BanCommand::List => (
            c.get(&["auth", "bans"], &[]).await?,
            Box::new(|v| {
                render(
                    v.as_array().map_or(&[][..], Vec::as_slice),
                    &[
                        ("KIND", "/kind"),
                        ("VALUE", "/value"),
                        ("UNTIL (ms)", "/until_ms"),
                        ("REASON", "/reason"),
                    ],
                )
            }),
        ),
        BanCommand::Add {
            kind,
            value,
            for_secs,
            reason,
        } => {
            let until_ms = for_secs.map(|s| strata_journal::now_ms() as u64 + s * 1000);
            let body =
                json!({"kind": kind, "value": value, "until_ms": until_ms, "reason": reason});
            let url = c.url(&["auth", "bans"], &[]);
            c.call(Method::POST, url, Some(body)).await?;
            (Value::Null, done(format!("{kind} {value} banned")))
        }
        BanCommand::Remove { kind, value } => {
            let url = c.url(&["auth", "bans", &kind, &value], &[]);
            c.call(Method::DELETE, url, None).await?;
            (Value::Null, done(format!("ban on {kind} {value} lifted")))
        }
    })
}

#[derive(Subcommand)]
pub enum TokensCommand {
    /// Admin API tokens (names and roles).
    List,
    /// Create (or replace) a token; its secret is printed this once.
    Create {
        name: String,
        /// `viewer` (reads only) or `administrator`.
        #[arg(long, default_value = "viewer")]
        role: String,
    },
    /// Revoke a token.
    Revoke { name: String },
}

pub async fn tokens(c: &AdminClient, command: TokensCommand) -> anyhow::Result<Shown> {
    Ok(match command {
        TokensCommand::List => (
            c.get(&["auth", "tokens"], &[]).await?,
            Box::new(|v| {
                render(
                    v.as_array().map_or(&[][..], Vec::as_slice),
                    &[("TOKEN", "/name"), ("ROLE", "/role")],
                )
            }),
        ),
        TokensCommand::Create { name, role } => {
            let url = c.url(&["auth", "tokens"], &[]);
            let v = c
                .call(Method::POST, url, Some(json!({"name": name, "role": role})))
                .await?;
            (
                v,
                Box::new(|v| v["token"].as_str().unwrap_or_default().to_string()),
            )
        }
        TokensCommand::Revoke { name } => {
            let url = c.url(&["auth", "tokens", &name], &[]);
            c.call(Method::DELETE, url, None).await?;
            (Value::Null, done(format!("token {name} revoked")))
        }
    })
}
