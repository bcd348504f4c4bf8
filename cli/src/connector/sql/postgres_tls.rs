//! PostgreSQL over TLS: the url's `sslmode` and `sslrootcert`, read as
//! libpq reads them, and tokio-postgres's TLS hooks on tokio-rustls.
//!
//! - `disable`, `allow`, `prefer` (the default): no TLS. libpq's `prefer`
//!   tries TLS without checking the server's certificate; Sluice never
//!   connects to a server it did not check, so it does not try.
//! - `require`, `verify-ca`: TLS, and the server's certificate must chain
//!   to a CA of `sslrootcert` (else `SSL_CERT_FILE` or the system's
//!   bundle). libpq's `require` checks nothing unless given a root
//!   certificate; here it always checks the chain.
//! - `verify-full`: the chain and the host name (`host`, even when
//!   `hostaddr` says where to connect).
//!
//! tokio-postgres reads neither `sslrootcert` nor the `verify-*` modes, so
//! they are taken out of the url before it sees it. No channel binding is
//! offered (SCRAM without `-PLUS`): the binding would need the certificate's
//! signature hash, which rustls does not expose.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

use crate::connector::tls::{Check, client_config};

/// What the url asks of the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub mode: Mode,
    /// `sslrootcert`: the CAs to trust; `None` (or `system`) for the
    /// system's bundle.
    pub root_cert: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `disable`, `allow`, `prefer`: no TLS.
    Plain,
    /// `require`, `verify-ca`: TLS, the certificate's chain checked.
    Chain,
    /// `verify-full`: TLS, the chain and the host name checked.
    Full,
}

impl Mode {
    fn parse(value: &str) -> Result<Self, String> {
        match value {
            "disable" | "allow" | "prefer" => Ok(Mode::Plain),
            "require" | "verify-ca" => Ok(Mode::Chain),
            "verify-full" => Ok(Mode::Full),
            other => Err(format!(
                "sslmode={other}: not a mode (disable, allow, prefer, require, verify-ca, verify-full)"
            )),
        }
    }

    /// How the mode is shown in the database's description.
    pub fn shown(self) -> &'static str {
        match self {
            Mode::Plain => "without TLS",
            Mode::Chain => "over TLS, certificate chain checked",
            Mode::Full => "over TLS, certificate chain and host name checked",
        }
    }
}

/// A `postgres://` `url` as tokio-postgres reads it (`sslrootcert` taken
/// out, the mode as one it knows), and the TLS asked for.
pub fn split(url: &str) -> Result<(String, Tls), String> {
    let mut tls = Tls {
        mode: Mode::Plain,
        root_cert: None,
    };
    let mut take = |key: &str, value: String| -> Result<bool, String> {
        match key {
            "sslmode" => tls.mode = Mode::parse(&value)?,
            "sslrootcert" if value == "system" => tls.root_cert = None,
            "sslrootcert" => tls.root_cert = Some(PathBuf::from(value)),
            _ => return Ok(false),
        }
        Ok(true)
    };
    let rest = split_url(url, &mut take)?;
    let known = if tls.mode == Mode::Plain {
        "disable"
    } else {
        "require"
    };
    let sep = if rest.contains('?') { '&' } else { '?' };
    Ok((format!("{rest}{sep}sslmode={known}"), tls))
}

type Take<'a> = dyn FnMut(&str, String) -> Result<bool, String> + 'a;

/// A `postgres://` url without the query parameters `take` took.
fn split_url(url: &str, take: &mut Take<'_>) -> Result<String, String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok(url.to_string());
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !take(&percent_decoded(key)?, percent_decoded(value)?)? {
            kept.push(pair);
        }
    }
    Ok(if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    })
}

/// `%XX` escapes of a url's query decoded.
fn percent_decoded(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("{text:?}: a % not followed by two hex digits"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{text:?}: not UTF-8 once decoded"))
}

/// The TLS connector a mode asks for; `None` for [`Mode::Plain`].
pub fn connector(tls: &Tls) -> anyhow::Result<Option<MakeRustls>> {
    let check = match tls.mode {
        Mode::Plain => return Ok(None),
        Mode::Chain => Check::ChainOnly,
        Mode::Full => Check::ChainAndName,
    };
    let config = client_config(
        tls.root_cert.as_deref().map(Path::new),
        check,
        "give the server's CA with sslrootcert=FILE in the url",
    )?;
    Ok(Some(MakeRustls(config)))
}

/// What to do about a failed handshake, when its cause is one a user can
/// fix from the url.
pub fn hint(error: &tokio_postgres::Error) -> Option<&'static str> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        let e = match e.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => inner as &(dyn std::error::Error + 'static),
            None => e,
        };
        if let Some(rustls::Error::InvalidCertificate(c)) = e.downcast_ref::<rustls::Error>() {
            use rustls::CertificateError as C;
            return match c {
                C::NotValidForName | C::NotValidForNameContext { .. } => Some(
                    "the server's certificate does not name the host of the url: connect by a \
                     name it lists (with hostaddr=IP to say where), or use sslmode=verify-ca to \
                     check only its chain",
                ),
                C::UnknownIssuer => Some(
                    "the server's certificate does not chain to a trusted CA: give its CA with \
                     sslrootcert=FILE",
                ),
                _ => None,
            };
        }
        cause = e.source();
    }
    None
}

/// tokio-postgres's TLS factory over rustls.
#[derive(Clone)]
pub struct MakeRustls(Arc<rustls::ClientConfig>);

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, Self::Error> {
        Ok(RustlsConnect {
            config: self.0.clone(),
            name: ServerName::try_from(domain.to_string())?,
        })
    }
}

/// One connection's handshake, to the host named.
pub struct RustlsConnect {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            tokio_rustls::TlsConnector::from(self.config)
                .connect(self.name, stream)
                .await
                .map(RustlsStream)
        })
    }
}

/// A TLS connection to the server.
pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_loses_what_tokio_postgres_does_not_read() {
        let (rest, tls) = split(
            "postgres://u:p@db.example:5433/app?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem",
        )
        .unwrap();
        assert_eq!(
            rest,
            "postgres://u:p@db.example:5433/app?application_name=x&sslmode=require"
        );
        assert_eq!(tls.mode, Mode::Full);
        assert_eq!(tls.root_cert, Some(PathBuf::from("/etc/ca.pem")));
        let (rest, tls) = split("postgresql://h/d?sslmode=verify-ca").unwrap();
        assert_eq!(rest, "postgresql://h/d?sslmode=require");
        assert_eq!(tls.mode, Mode::Chain);
        let (rest, tls) = split("postgres://h/d").unwrap();
        assert_eq!(rest, "postgres://h/d?sslmode=disable");
        assert_eq!(tls.mode, Mode::Plain);
        let (_, tls) = split("postgres://h/d?sslmode=require&sslrootcert=system").unwrap();
        assert_eq!((tls.mode, tls.root_cert), (Mode::Chain, None));
    }

    #[test]
    fn bad_modes_and_escapes_are_refused_saying_why() {
        let e = split("postgres://h/d?sslmode=verify").unwrap_err();
        assert!(e.contains("sslmode=verify: not a mode"), "{e}");
        let e = split("postgres://h/d?sslrootcert=%zz").unwrap_err();
        assert!(e.contains("two hex digits"), "{e}");
    }
}
