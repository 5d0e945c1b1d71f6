//! The framing that carries a report out of a VM over a serial port.
//!
//! A serial line can lose or mangle bytes (a VM killed mid-write, a console that interleaves
//! kernel messages), so a report is never taken on trust: the header announces the payload's
//! length and CRC-32, and an end marker follows the payload. The reader reports exactly which
//! of these did not hold, so "the report was truncated after 4096 of 19929 bytes" is told
//! apart from "no report was ever sent".
//!
//! ```text
//! ZCCHECK-FRAME v1 kind=report len=19929 crc32=1a2b3c4d\n
//! <19929 bytes>\n
//! ZCCHECK-FRAME-END\n
//! ```

use std::fmt;

const BEGIN: &str = "ZCCHECK-FRAME v1 ";
const END: &str = "\nZCCHECK-FRAME-END\n";

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The JSON report of a run.
    Report,
    /// Why the guest could not produce a report (plain text).
    Failure,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Report => "report",
            Kind::Failure => "failure",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        match s {
            "report" => Some(Kind::Report),
            "failure" => Some(Kind::Failure),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: Kind,
    pub payload: Vec<u8>,
}

/// Why a stream held no intact frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// No frame header at all: the guest never started sending.
    Missing,
    /// A header that does not parse.
    BadHeader(String),
    /// The stream ended inside the payload.
    Truncated { expected: usize, got: usize },
    /// The payload arrived whole but its checksum differs: bytes were changed on the way.
    Checksum { expected: u32, got: u32 },
    /// The payload is followed by something other than the end marker.
    NoEndMarker,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Missing => write!(f, "no report frame was sent"),
            FrameError::BadHeader(h) => write!(f, "malformed frame header {h:?}"),
            FrameError::Truncated { expected, got } => write!(
                f,
                "the report frame was truncated after {got} of {expected} bytes"
            ),
            FrameError::Checksum { expected, got } => write!(
                f,
                "the report frame is corrupt: CRC-32 {got:08x}, header says {expected:08x}"
            ),
            FrameError::NoEndMarker => write!(f, "the report frame lacks its end marker"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Encodes one frame.
pub fn encode(kind: Kind, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "{BEGIN}kind={} len={} crc32={:08x}\n",
        kind.name(),
        payload.len(),
        crc32fast::hash(payload)
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out.extend_from_slice(END.as_bytes());
    out
}

/// Finds the last intact frame in `stream` (anything around frames is ignored). When none is
/// intact, the error describes the last frame that was attempted.
pub fn decode_last(stream: &[u8]) -> Result<Frame, FrameError> {
    let starts: Vec<usize> = find_all(stream, BEGIN.as_bytes());
    let mut last_err = FrameError::Missing;
    for &start in starts.iter().rev() {
        match decode_at(&stream[start..]) {
            Ok(frame) => return Ok(frame),
            Err(e) if last_err == FrameError::Missing => last_err = e,
            Err(_) => {}
        }
    }
    Err(last_err)
}

fn decode_at(s: &[u8]) -> Result<Frame, FrameError> {
    let nl = s
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| FrameError::BadHeader(String::from_utf8_lossy(s).into_owned()))?;
    let header = String::from_utf8_lossy(&s[..nl]).into_owned();
    let bad = || FrameError::BadHeader(header.clone());
    let mut kind = None;
    let mut len = None;
    let mut crc = None;
    for field in header[BEGIN.len()..].split_whitespace() {
        let (k, v) = field.split_once('=').ok_or_else(bad)?;
        match k {
            "kind" => kind = Kind::parse(v),
            "len" => len = v.parse::<usize>().ok(),
            "crc32" => crc = u32::from_str_radix(v, 16).ok(),
            _ => {}
        }
    }
    let (kind, len, crc) = (
        kind.ok_or_else(bad)?,
        len.ok_or_else(bad)?,
        crc.ok_or_else(bad)?,
    );
    let body = &s[nl + 1..];
    if body.len() < len {
        return Err(FrameError::Truncated {
            expected: len,
            got: body.len(),
        });
    }
    let payload = &body[..len];
    let got = crc32fast::hash(payload);
    if got != crc {
        return Err(FrameError::Checksum { expected: crc, got });
    }
    if !body[len..].starts_with(END.as_bytes()) {
        return Err(FrameError::NoEndMarker);
    }
    Ok(Frame {
        kind,
        payload: payload.to_vec(),
    })
}

fn find_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &[u8] = br#"{"schema_version":1,"cases":[]}"#;

    #[test]
    fn round_trips_amid_console_noise() {
        let mut stream = b"[    2.1] random kernel line\n".to_vec();
        stream.extend(encode(Kind::Report, REPORT));
        stream.extend(b"reboot: Power down\n");
        let f = decode_last(&stream).unwrap();
        assert_eq!(f.kind, Kind::Report);
        assert_eq!(f.payload, REPORT);
    }

    #[test]
    fn an_empty_stream_has_no_frame() {
        assert_eq!(decode_last(b"booting...\n"), Err(FrameError::Missing));
    }

    #[test]
    fn truncation_is_reported_with_the_byte_counts() {
        let full = encode(Kind::Report, REPORT);
        let cut = &full[..full.len() - END.len() - 5];
        assert_eq!(
            decode_last(cut),
            Err(FrameError::Truncated {
                expected: REPORT.len(),
                got: REPORT.len() - 5
            })
        );
    }

    #[test]
    fn a_changed_byte_fails_the_checksum() {
        let mut full = encode(Kind::Report, REPORT);
        let i = full.len() - END.len() - 3;
        full[i] ^= 0x20;
        assert!(matches!(
            decode_last(&full),
            Err(FrameError::Checksum { .. })
        ));
    }

    #[test]
    fn a_missing_end_marker_is_noticed() {
        let full = encode(Kind::Report, REPORT);
        let cut = &full[..full.len() - 4];
        assert_eq!(decode_last(cut), Err(FrameError::NoEndMarker));
    }

    #[test]
    fn the_last_intact_frame_wins() {
        let mut stream = encode(Kind::Failure, b"first try failed");
        stream.extend(encode(Kind::Report, REPORT));
        assert_eq!(decode_last(&stream).unwrap().kind, Kind::Report);
    }

    #[test]
    fn a_garbled_header_is_named() {
        let stream = b"ZCCHECK-FRAME v1 kind=report len=x crc32=0\n{}";
        assert!(matches!(
            decode_last(stream),
            Err(FrameError::BadHeader(h)) if h.contains("len=x")
        ));
    }
}
