//! A minimal MQTT client for load generation, built on the frontend's own codec: connect,
//! subscribe, publish with a QoS 1 window, and a receive loop that acknowledges.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use bytes::BytesMut;
use strata_mqtt::codec::{
    self, Ack, Connect, Packet, Properties, ProtocolVersion, Publish, QoS, Subscribe,
    SubscriptionOptions,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

const MAX: usize = 16 * 1024 * 1024;

/// A byte stream to the broker: plain TCP or TLS over it.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How connections reach the broker: plain TCP, or TLS trusting one CA (`--tls-ca`).
#[derive(Clone)]
pub struct Dialer {
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl Dialer {
    /// Plain TCP without `ca`; TLS verifying the broker against `ca` as `server_name`
    /// otherwise.
    pub fn new(ca: Option<&Path>, server_name: &str) -> anyhow::Result<Self> {
        let Some(ca) = ca else {
            return Ok(Dialer { tls: None });
        };
        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        for cert in
            CertificateDer::pem_file_iter(ca).with_context(|| format!("read {}", ca.display()))?
        {
            roots.add(cert.with_context(|| format!("parse {}", ca.display()))?)?;
        }
        let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
        let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from(server_name.to_string())
            .with_context(|| format!("server name {server_name}"))?;
        Ok(Dialer {
            tls: Some((TlsConnector::from(Arc::new(config)), name)),
        })
    }

    /// The stream over `tcp`: TLS after a handshake when configured.
    pub async fn wrap(&self, tcp: TcpStream) -> anyhow::Result<Box<dyn Io>> {
        tcp.set_nodelay(true)?;
        Ok(match &self.tls {
            None => Box::new(tcp),
            Some((connector, name)) => Box::new(
                connector
                    .connect(name.clone(), tcp)
                    .await
                    .context("TLS handshake")?,
            ),
        })
    }
}

/// One connection.
pub struct BenchClient {
    stream: Box<dyn Io>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    next_id: u16,
}

impl BenchClient {
    /// Connects with MQTT 3.1.1, with a clean session or (`clean` false) a persistent one.
    pub async fn connect(
        dialer: &Dialer,
        addr: SocketAddr,
        client_id: &str,
        clean: bool,
    ) -> anyhow::Result<Self> {
        let tcp = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect {addr}"))?;
        let stream = dialer.wrap(tcp).await?;
        let mut c = BenchClient {
            stream,
            rbuf: BytesMut::with_capacity(64 * 1024),
            wbuf: BytesMut::with_capacity(64 * 1024),
            next_id: 0,
        };
        c.put(&Packet::Connect(Box::new(Connect {
            version: ProtocolVersion::V311,
            clean_start: clean,
            keep_alive: 600,
            client_id: client_id.to_string(),
            will: None,
            username: None,
            password: None,
            properties: Properties::default(),
        })))?;
        c.flush().await?;
        match c.next().await? {
            Packet::ConnAck(a) if a.code.0 == 0 => Ok(c),
            other => bail!("unexpected answer to CONNECT: {other:?}"),
        }
    }

    fn put(&mut self, p: &Packet) -> anyhow::Result<()> {
        codec::encode(p, ProtocolVersion::V311, MAX, &mut self.wbuf)?;
        Ok(())
    }

    /// Writes what is buffered.
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf).await?;
            self.wbuf.clear();
        }
        Ok(())
    }

    /// The next packet from the broker.
    pub async fn next(&mut self) -> anyhow::Result<Packet> {
        loop {
            if let Some(p) = self.buffered()? {
                return Ok(p);
            }
            self.fill().await?;
        }
    }

    /// The next packet already read, if a whole one is buffered.
    pub fn buffered(&mut self) -> anyhow::Result<Option<Packet>> {
        Ok(codec::decode(
            &mut self.rbuf,
            Some(ProtocolVersion::V311),
            MAX,
        )?)
    }

    /// Reads once from the broker, whatever has arrived (up to 64 KiB).
    pub async fn fill(&mut self) -> anyhow::Result<()> {
        self.rbuf.reserve(64 * 1024);
        if self.stream.read_buf(&mut self.rbuf).await? == 0 {
            bail!("broker closed the connection");
        }
        Ok(())
    }

    /// Subscribes and waits for the SUBACK.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> anyhow::Result<()> {
        let id = self.id();
        self.put(&Packet::Subscribe(Subscribe {
            packet_id: id,
            filters: vec![(
                filter.to_string(),
                SubscriptionOptions {
                    qos,
                    ..Default::default()
                },
            )],
            properties: Properties::default(),
        }))?;
        self.flush().await?;
        loop {
            if let Packet::SubAck(a) = self.next().await? {
                if a.reasons.iter().any(|r| r.0 >= 0x80) {
                    bail!("subscription to {filter} refused");
                }
                return Ok(());
            }
        }
    }

    fn id(&mut self) -> u16 {
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.next_id
    }

    /// Buffers the acknowledgement a received PUBLISH needs.
    pub fn acknowledge(&mut self, p: &Publish) -> anyhow::Result<()> {
        match (p.qos, p.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => self.put(&Packet::PubAck(Ack::new(id))),
            (QoS::ExactlyOnce, Some(id)) => self.put(&Packet::PubRec(Ack::new(id))),
            _ => Ok(()),
        }
    }

    /// Buffers a PUBREL (the publisher's side of QoS 2) or PUBCOMP (the receiver's).
    pub fn answer_qos2(&mut self, p: &Packet) -> anyhow::Result<()> {
        match p {
            Packet::PubRec(a) => self.put(&Packet::PubRel(Ack::new(a.packet_id))),
            Packet::PubRel(a) => self.put(&Packet::PubComp(Ack::new(a.packet_id))),
            _ => Ok(()),
        }
    }

    /// Splits into halves for concurrent reading and writing.
    pub fn into_stream(self) -> (Box<dyn Io>, BytesMut) {
        (self.stream, self.rbuf)
    }
}
