//! A minimal keep-alive HTTP/1.1 client for the HTTP API: one request at a time on one
//! connection, as a backend's SDK with an agent would, reconnecting when the server closes.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::target::Target;

/// Largest response accepted (head and body).
const MAX_RESPONSE: usize = 1 << 20;

/// One keep-alive connection to the server's HTTP API.
#[derive(Debug)]
pub struct HttpConn {
    addr: std::net::SocketAddr,
    host: String,
    stream: Option<TcpStream>,
    buf: BytesMut,
    request: Vec<u8>,
}

impl HttpConn {
    /// A connection to `target`'s address (opened at the first request).
    pub fn new(target: &Target) -> Self {
        Self {
            addr: target.addr,
            host: target.host_header.clone(),
            stream: None,
            buf: BytesMut::with_capacity(4096),
            request: Vec::with_capacity(1024),
        }
    }

    /// Sends `POST path_and_query` with a JSON `body`; returns the status and the body.
    ///
    /// # Errors
    /// Socket errors and responses that are not HTTP/1.1.
    pub async fn post(&mut self, path_and_query: &str, body: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(self.addr).await?;
            stream.set_nodelay(true)?;
            self.stream = Some(stream);
            self.buf.clear();
        }
        self.request.clear();
        self.request.extend_from_slice(
            format!(
                "POST {path_and_query} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n",
                self.host,
                body.len()
            )
            .as_bytes(),
        );
        self.request.extend_from_slice(body);
        let result = self.exchange().await;
        if !matches!(result, Ok((_, _, true))) {
            self.stream = None;
        }
        result.map(|(status, body, _)| (status, body))
    }

    /// Writes the request and reads one response: status, body, and whether the connection
    /// stays open.
    async fn exchange(&mut self) -> anyhow::Result<(u16, Vec<u8>, bool)> {
        let stream = self.stream.as_mut().expect("connected");
        stream.write_all(&self.request).await?;
        let head_len = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            read_more(stream, &mut self.buf).await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_len])?.to_ascii_lowercase();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        anyhow::ensure!(
            status_line.starts_with("http/1."),
            "not an HTTP response: {status_line:?}"
        );
        let status: u16 = status_line.split(' ').nth(1).unwrap_or_default().parse()?;
        let (mut length, mut chunked, mut keep) = (None, false, status_line.starts_with("http/1.1"));
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            match (name.trim(), value.trim()) {
                ("content-length", v) => length = Some(v.parse::<usize>()?),
                ("transfer-encoding", v) => chunked = v.contains("chunked"),
                ("connection", v) if v.contains("close") => keep = false,
                ("connection", v) if v.contains("keep-alive") => keep = true,
                _ => {}
            }
        }
        self.buf.advance(head_len);
        let body = if chunked {
            let mut body = Vec::new();
            loop {
                let line_end = loop {
                    if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                        break i;
                    }
                    read_more(stream, &mut self.buf).await?;
                };
                let size_text = std::str::from_utf8(&self.buf[..line_end])?;
                let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)?;
                while self.buf.len() < line_end + 2 + size + 2 {
                    read_more(stream, &mut self.buf).await?;
                }
                body.extend_from_slice(&self.buf[line_end + 2..line_end + 2 + size]);
                self.buf.advance(line_end + 2 + size + 2);
                if size == 0 {
                    break body;
                }
            }
        } else {
            let length = length.unwrap_or(0);
            anyhow::ensure!(length <= MAX_RESPONSE, "response body of {length} bytes");
            while self.buf.len() < length {
                read_more(stream, &mut self.buf).await?;
            }
            self.buf.split_to(length).to_vec()
        };
        Ok((status, body, keep))
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut BytesMut) -> anyhow::Result<()> {
    anyhow::ensure!(buf.len() < MAX_RESPONSE, "response larger than {MAX_RESPONSE} bytes");
    buf.reserve(4096);
    anyhow::ensure!(stream.read_buf(buf).await? > 0, "server closed the HTTP connection");
    Ok(())
}
