//! Parsing of the `X-Webhook-Signature` header: `t=<unix secs>,v1=<hex>[,v1=<hex>…]`.

use std::fmt;

/// The longest header accepted, in bytes. A real one is about 80 bytes per signature.
pub const MAX_HEADER_LEN: usize = 1024;

/// The most `v1` signatures looked at. The sender sends one, or one per secret while a
/// secret is being rotated; more than this is refused rather than hashed over.
pub const MAX_SIGNATURES: usize = 8;

/// A parsed `X-Webhook-Signature` header.
///
/// Parsing only checks the shape; [`Verifier`](crate::Verifier) checks the signatures.
///
/// ```
/// use mapping_webhooks::SignatureHeader;
///
/// let header = SignatureHeader::parse(
///     "t=1717250400,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd",
/// )
/// .unwrap();
/// assert_eq!(header.timestamp(), 1_717_250_400);
/// assert_eq!(header.signatures().count(), 1);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SignatureHeader {
    timestamp: u64,
    /// Decoded `v1` values; `None` for one that was not 64 hex digits (it can match nothing).
    signatures: [Option<[u8; 32]>; MAX_SIGNATURES],
    len: usize,
}

/// Why a signature header could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderError {
    /// The header is empty.
    Empty,
    /// The header is longer than [`MAX_HEADER_LEN`].
    TooLong,
    /// A part is not `key=value`, or the header is not ASCII.
    MalformedPart,
    /// There is no `t=` part.
    MissingTimestamp,
    /// There is more than one `t=` part.
    DuplicateTimestamp,
    /// `t=` is not a whole number of seconds that fits in 64 bits, written as the sender
    /// writes it: decimal digits with no sign and no leading zero.
    InvalidTimestamp,
    /// There is no `v1=` part.
    MissingSignature,
    /// There are more than [`MAX_SIGNATURES`] `v1=` parts.
    TooManySignatures,
    /// No `v1=` value is 64 hex digits, so none can be a SHA-256 HMAC.
    InvalidSignature,
}

impl HeaderError {
    /// A short reason, safe to send back to the client.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Empty => "signature header is empty",
            Self::TooLong => "signature header is too long",
            Self::MalformedPart => "signature header is not a list of key=value parts",
            Self::MissingTimestamp => "signature header has no t= timestamp",
            Self::DuplicateTimestamp => "signature header has more than one t= timestamp",
            Self::InvalidTimestamp => "signature header timestamp is not a valid unix time",
            Self::MissingSignature => "signature header has no v1= signature",
            Self::TooManySignatures => "signature header has too many v1= signatures",
            Self::InvalidSignature => "signature header v1= value is not 64 hex digits",
        }
    }
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for HeaderError {}

impl SignatureHeader {
    /// Parses a header value.
    ///
    /// Parts are separated by commas, with optional spaces around them; parts with an
    /// unknown key (`v0=`, a future `v2=`) are ignored.
    ///
    /// # Errors
    ///
    /// A [`HeaderError`] saying what is wrong; never panics, whatever the input.
    pub fn parse(header: impl AsRef<[u8]>) -> Result<Self, HeaderError> {
        Self::parse_bytes(header.as_ref())
    }

    fn parse_bytes(header: &[u8]) -> Result<Self, HeaderError> {
        // First, on every path: the cap bounds the work whatever the form.
        if header.len() > MAX_HEADER_LEN {
            return Err(HeaderError::TooLong);
        }
        if let Some(parsed) = Self::parse_canonical(header) {
            return Ok(parsed);
        }
        if header.iter().all(u8::is_ascii_whitespace) {
            return Err(HeaderError::Empty);
        }
        // Also in parts that are otherwise skipped (unknown keys, a malformed `v1` beside
        // a good one): the sender only ever sends ASCII.
        if !header.is_ascii() {
            return Err(HeaderError::MalformedPart);
        }
        let mut timestamp = None;
        let mut signatures = [None; MAX_SIGNATURES];
        let mut len = 0;
        let mut any_valid = false;
        let mut rest = header;
        loop {
            // A `v1` value of 64 hex digits holds no comma: decode it while looking for
            // the end of the part, instead of scanning it twice.
            let lead = rest.len() - rest.trim_ascii_start().len();
            let mut decoded = None;
            let mut scan_from = lead;
            if let Some(hex) = rest[lead..].strip_prefix(b"v1=").and_then(|v| v.get(..64)) {
                decoded = decode_hex32(hex);
                if decoded.is_some() {
                    scan_from = lead + 3 + 64;
                }
            }
            let end = rest[scan_from..]
                .iter()
                .position(|&b| b == b',')
                .map_or(rest.len(), |i| scan_from + i);
            let part = rest[..end].trim_ascii();
            let Some(eq) = part.iter().position(|&b| b == b'=') else {
                return Err(HeaderError::MalformedPart);
            };
            let (key, value) = (&part[..eq], &part[eq + 1..]);
            match key {
                b"t" => {
                    if timestamp.is_some() {
                        return Err(HeaderError::DuplicateTimestamp);
                    }
                    timestamp = Some(parse_timestamp(value)?);
                }
                b"v1" => {
                    if len == MAX_SIGNATURES {
                        return Err(HeaderError::TooManySignatures);
                    }
                    let decoded = match decoded {
                        Some(signature) if value.len() == 64 => Some(signature),
                        _ => decode_hex32(value),
                    };
                    any_valid |= decoded.is_some();
                    signatures[len] = decoded;
                    len += 1;
                }
                b"" => return Err(HeaderError::MalformedPart),
                _ => {}
            }
            match rest.get(end + 1..) {
                Some(next) => rest = next,
                None => break,
            }
        }
        let timestamp = timestamp.ok_or(HeaderError::MissingTimestamp)?;
        if len == 0 {
            return Err(HeaderError::MissingSignature);
        }
        if !any_valid {
            return Err(HeaderError::InvalidSignature);
        }
        Ok(Self {
            timestamp,
            signatures,
            len,
        })
    }

    /// The exact form the sender writes, `t=<digits>,v1=<64 hex digits>` and nothing
    /// else, parsed without the general loop; `None` for anything else (the general
    /// parser then decides, errors included). A proptest checks both agree.
    #[inline]
    fn parse_canonical(header: &[u8]) -> Option<Self> {
        let rest = header.strip_prefix(b"t=")?;
        let digits = rest.iter().position(|&b| b == b',')?;
        let hex = rest[digits..].strip_prefix(b",v1=")?;
        let timestamp = parse_timestamp(&rest[..digits]).ok()?;
        let mut signatures = [None; MAX_SIGNATURES];
        signatures[0] = Some(decode_hex32(hex)?);
        Some(Self {
            timestamp,
            signatures,
            len: 1,
        })
    }

    /// The signed timestamp, in seconds since the Unix epoch.
    pub fn timestamp(&self) -> u64 {
        self.timestamp
    }

    /// The well-formed `v1` signatures, in header order.
    pub fn signatures(&self) -> impl Iterator<Item = &[u8; 32]> {
        self.signatures[..self.len].iter().flatten()
    }

    /// The header written back as `t=<timestamp>,v1=<hex>[,v1=<hex>…]`, with its
    /// well-formed signatures only: what a durable inbox stores to verify the delivery
    /// again later (the ones left out could match no secret).
    ///
    /// ```
    /// use mapping_webhooks::SignatureHeader;
    ///
    /// let text = format!("t=1717250400,v1={},v0=ignored", "ab".repeat(32));
    /// let header = SignatureHeader::parse(&text)?;
    /// assert_eq!(header.to_header_value(), format!("t=1717250400,v1={}", "ab".repeat(32)));
    /// # Ok::<(), mapping_webhooks::HeaderError>(())
    /// ```
    pub fn to_header_value(&self) -> String {
        let mut text = String::with_capacity(24 + self.len * 68);
        text.push_str("t=");
        text.push_str(&self.timestamp.to_string());
        for signature in self.signatures() {
            text.push_str(",v1=");
            encode_hex32(signature, &mut text);
        }
        text
    }
}

impl fmt::Debug for SignatureHeader {
    // Signatures are left out: a log line should never carry one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignatureHeader")
            .field("timestamp", &self.timestamp)
            .field("signatures", &self.len)
            .finish()
    }
}

/// Refuses leading zeros: the sender never writes them, and they would let one
/// timestamp take many forms (and a header grow without changing its meaning).
pub(crate) fn parse_timestamp(digits: &[u8]) -> Result<u64, HeaderError> {
    if digits.is_empty() || (digits.len() > 1 && digits[0] == b'0') {
        return Err(HeaderError::InvalidTimestamp);
    }
    let mut value: u64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return Err(HeaderError::InvalidTimestamp);
        }
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or(HeaderError::InvalidTimestamp)?;
    }
    Ok(value)
}

/// Each byte's value as a hex digit (either case), or `0xff` for a byte that is none.
const HEX_VALUE: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        table[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// Decodes exactly 64 hex digits (either case) into 32 bytes; anything else is `None`.
///
/// Branch-free over the digits: every byte is looked up, and any invalid one shows in
/// the high bits of the accumulated `bad`.
pub(crate) fn decode_hex32(hex: &[u8]) -> Option<[u8; 32]> {
    let hex: &[u8; 64] = hex.try_into().ok()?;
    let mut out = [0u8; 32];
    let mut bad = 0u8;
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let (high, low) = (
            HEX_VALUE[usize::from(pair[0])],
            HEX_VALUE[usize::from(pair[1])],
        );
        bad |= high | low;
        *byte = (high << 4) | low;
    }
    (bad & 0xf0 == 0).then_some(out)
}

/// Writes 32 bytes as 64 lowercase hex digits.
pub(crate) fn encode_hex32(bytes: &[u8], out: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIG: &str = "5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd";

    fn parse(s: &str) -> Result<SignatureHeader, HeaderError> {
        SignatureHeader::parse(s)
    }

    #[test]
    fn parses_one_signature() {
        let h = parse(&format!("t=1717250400,v1={SIG}")).unwrap();
        assert_eq!(h.timestamp(), 1_717_250_400);
        let sigs: Vec<_> = h.signatures().collect();
        assert_eq!(sigs.len(), 1);
        assert_eq!(sigs[0][0], 0x52);
        assert_eq!(sigs[0][31], 0xbd);
    }

    #[test]
    fn parses_several_signatures_in_any_order_with_spaces() {
        let other = "A".repeat(64);
        let h = parse(&format!("v1={other}, t=5 ,v1={SIG}")).unwrap();
        assert_eq!(h.timestamp(), 5);
        let sigs: Vec<_> = h.signatures().collect();
        assert_eq!(sigs.len(), 2);
        assert_eq!(sigs[0], &[0xaa; 32]);
    }

    #[test]
    fn ignores_unknown_schemes() {
        let h = parse(&format!("t=1,v0=zz,v1={SIG},v2=whatever")).unwrap();
        assert_eq!(h.signatures().count(), 1);
    }

    #[test]
    fn empty_header() {
        assert_eq!(parse(""), Err(HeaderError::Empty));
        assert_eq!(parse("   "), Err(HeaderError::Empty));
    }

    #[test]
    fn overflowing_and_signed_timestamps() {
        for t in [
            "18446744073709551616",
            "99999999999999999999999",
            "-1",
            "+1",
            "",
            "1.5",
            "1e9",
            " 1 2",
            "01717250400",
            "00",
        ] {
            assert_eq!(
                parse(&format!("t={t},v1={SIG}")),
                Err(HeaderError::InvalidTimestamp),
                "t={t}"
            );
        }
        // u64::MAX itself parses: the window check refuses it later.
        assert_eq!(
            parse(&format!("t=18446744073709551615,v1={SIG}"))
                .unwrap()
                .timestamp(),
            u64::MAX
        );
    }

    #[test]
    fn non_hex_and_wrong_length_signatures() {
        let non_hex = format!("{}zz", &SIG[..62]);
        for v1 in [non_hex.as_str(), &SIG[..63], &SIG[..62], "", &SIG[..32]] {
            assert_eq!(
                parse(&format!("t=1,v1={v1}")),
                Err(HeaderError::InvalidSignature),
                "v1={v1}"
            );
        }
        let long = format!("{SIG}00");
        assert_eq!(
            parse(&format!("t=1,v1={long}")),
            Err(HeaderError::InvalidSignature)
        );
        // A malformed v1 beside a good one is skipped, not fatal.
        let h = parse(&format!("t=1,v1=abc,v1={SIG}")).unwrap();
        assert_eq!(h.signatures().count(), 1);
    }

    #[test]
    fn missing_and_duplicate_parts() {
        assert_eq!(
            parse(&format!("v1={SIG}")),
            Err(HeaderError::MissingTimestamp)
        );
        assert_eq!(parse("t=1"), Err(HeaderError::MissingSignature));
        assert_eq!(
            parse(&format!("t=1,t=2,v1={SIG}")),
            Err(HeaderError::DuplicateTimestamp)
        );
        assert_eq!(
            parse(&format!("t=1,,v1={SIG}")),
            Err(HeaderError::MalformedPart)
        );
        assert_eq!(
            parse(&format!("t=1;v1={SIG}")),
            Err(HeaderError::InvalidTimestamp)
        );
        assert_eq!(
            parse(&format!("t=1,={SIG}")),
            Err(HeaderError::MalformedPart)
        );
        assert_eq!(parse("garbage"), Err(HeaderError::MalformedPart));
    }

    #[test]
    fn the_length_cap_holds_on_the_fast_path_too() {
        // The review's input: the sender's exact form, its `t` padded with zeros to 3 KiB.
        let padded = format!("t={}1717250400,v1={SIG}", "0".repeat(3_000));
        assert_eq!(parse(&padded), Err(HeaderError::TooLong));
        // Padded to just under the cap, the zeros are still refused.
        let padded = format!("t={}1717250400,v1={SIG}", "0".repeat(900));
        assert!(padded.len() <= MAX_HEADER_LEN);
        assert_eq!(parse(&padded), Err(HeaderError::InvalidTimestamp));
        // `t=0` alone is a number like any other (the window check refuses it).
        assert_eq!(parse(&format!("t=0,v1={SIG}")).unwrap().timestamp(), 0);
    }

    #[test]
    fn caps_length_and_count() {
        let nine = vec![format!("v1={SIG}"); MAX_SIGNATURES + 1].join(",");
        assert!(nine.len() < MAX_HEADER_LEN);
        assert_eq!(
            parse(&format!("t=1,{nine}")),
            Err(HeaderError::TooManySignatures)
        );
        let eight = vec![format!("v1={SIG}"); MAX_SIGNATURES].join(",");
        assert_eq!(
            parse(&format!("t=1,{eight}")).unwrap().signatures().count(),
            8
        );
        let huge = format!("t=1,v1={SIG},x={}", "a".repeat(MAX_HEADER_LEN));
        assert_eq!(parse(&huge), Err(HeaderError::TooLong));
    }

    #[test]
    fn non_ascii_bytes_never_panic() {
        for bytes in [
            &b"t=\xff,v1=00"[..],
            b"\xc3\xa9=1",
            b"t=1,v1=\xe2\x82\xac",
            b"=",
            b",",
        ] {
            assert!(SignatureHeader::parse(bytes).is_err());
        }
        // Even where the bytes would otherwise be skipped.
        let mut latin1 = format!("t=1,v1={SIG},v0=").into_bytes();
        latin1.push(0xff);
        assert_eq!(
            SignatureHeader::parse(latin1),
            Err(HeaderError::MalformedPart)
        );
        for header in [
            format!("t=1,v1={SIG},v0=\u{e9}"),
            format!("t=1,v1=\u{20ac},v1={SIG}"),
            format!("t=1,v1={SIG},caf\u{e9}=1"),
        ] {
            assert_eq!(parse(&header), Err(HeaderError::MalformedPart), "{header}");
        }
    }

    #[test]
    fn debug_hides_signatures() {
        let h = parse(&format!("t=1,v1={SIG}")).unwrap();
        let shown = format!("{h:?}");
        assert!(!shown.contains("5257"), "{shown}");
    }

    /// The parser as first written (split, trim, decode): the optimised one must agree
    /// with it on every input.
    fn parse_reference(header: &[u8]) -> Result<SignatureHeader, HeaderError> {
        if header.len() > MAX_HEADER_LEN {
            return Err(HeaderError::TooLong);
        }
        if header.iter().all(u8::is_ascii_whitespace) {
            return Err(HeaderError::Empty);
        }
        if !header.is_ascii() {
            return Err(HeaderError::MalformedPart);
        }
        let mut timestamp = None;
        let mut signatures = [None; MAX_SIGNATURES];
        let mut len = 0;
        let mut any_valid = false;
        for part in header.split(|&b| b == b',') {
            let part = part.trim_ascii();
            let Some(eq) = part.iter().position(|&b| b == b'=') else {
                return Err(HeaderError::MalformedPart);
            };
            let (key, value) = (&part[..eq], &part[eq + 1..]);
            match key {
                b"t" => {
                    if timestamp.is_some() {
                        return Err(HeaderError::DuplicateTimestamp);
                    }
                    timestamp = Some(parse_timestamp(value)?);
                }
                b"v1" => {
                    if len == MAX_SIGNATURES {
                        return Err(HeaderError::TooManySignatures);
                    }
                    let decoded = decode_hex_reference(value);
                    any_valid |= decoded.is_some();
                    signatures[len] = decoded;
                    len += 1;
                }
                b"" => return Err(HeaderError::MalformedPart),
                _ => {}
            }
        }
        let timestamp = timestamp.ok_or(HeaderError::MissingTimestamp)?;
        if len == 0 {
            return Err(HeaderError::MissingSignature);
        }
        if !any_valid {
            return Err(HeaderError::InvalidSignature);
        }
        Ok(SignatureHeader {
            timestamp,
            signatures,
            len,
        })
    }

    fn decode_hex_reference(hex: &[u8]) -> Option<[u8; 32]> {
        fn nibble(c: u8) -> Option<u8> {
            match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'a'..=b'f' => Some(c - b'a' + 10),
                b'A'..=b'F' => Some(c - b'A' + 10),
                _ => None,
            }
        }
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
            *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Some(out)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]

        #[test]
        fn agrees_with_the_reference_on_header_like_strings(
            header in "( {0,2}(t|v1|v0|)(=|)[ 0-9a-fA-Fg,]{0,70} {0,2}(,|;|)){0,5}"
        ) {
            proptest::prop_assert_eq!(SignatureHeader::parse(&header), parse_reference(header.as_bytes()));
        }

        #[test]
        fn agrees_with_the_reference_on_near_valid_headers(
            t in "[0-9]{1,12}",
            sigs in proptest::collection::vec("[0-9a-fA-F]{62,66}|[0-9a-f]{63}[g,; ]", 1..4),
            spaces in "[ \t]{0,2}",
        ) {
            let mut header = format!("t={t}");
            for sig in &sigs {
                header.push_str(&format!(",{spaces}v1={sig}{spaces}"));
            }
            proptest::prop_assert_eq!(SignatureHeader::parse(&header), parse_reference(header.as_bytes()));
        }

        #[test]
        fn agrees_with_the_reference_on_canonical_headers(
            t in "[0-9]{0,22}",
            sig in "[0-9a-fA-F]{62,66}",
            odd in "|[ ,;g\u{e9}]",
            at in 0usize..100,
        ) {
            let mut header = format!("t={t},v1={sig}");
            let at = at.min(header.len());
            if header.is_char_boundary(at) {
                header.insert_str(at, &odd);
            }
            proptest::prop_assert_eq!(SignatureHeader::parse(&header), parse_reference(header.as_bytes()));
        }

        #[test]
        fn agrees_with_the_reference_on_any_bytes(header in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            proptest::prop_assert_eq!(SignatureHeader::parse(&header), parse_reference(&header));
        }
    }

    #[test]
    fn hex_table_decodes_every_byte_like_the_reference() {
        for b in 0..=255u8 {
            let hex = [b; 64];
            assert_eq!(
                decode_hex32(&hex),
                decode_hex_reference(&hex),
                "byte {b:#04x}"
            );
        }
    }

    #[test]
    fn hex_round_trip() {
        let bytes: Vec<u8> = (0..32).collect();
        let mut s = String::new();
        encode_hex32(&bytes, &mut s);
        assert_eq!(decode_hex32(s.as_bytes()).unwrap().to_vec(), bytes);
    }
}
