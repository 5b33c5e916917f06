//! Pre-signs the load test's requests, so the load generator (wrk) only sends bytes.
//!
//! ```text
//! load_presign OUT COUNT BODY_BYTES TAG
//! ```
//!
//! Writes the body's prefix and suffix on the first two lines, then one request per line:
//! its 30-character `eventId` (distinct, so the dedup store does a real insert for
//! each) and its `X-Webhook-Signature`, separated by a tab. The body of a request is
//! prefix + eventId + suffix; all are signed now, so use them within five minutes.

use std::io::{BufWriter, Write};

use mapping_webhooks::{Secret, Signer};
use mapping_webhooks_examples::DEV_SECRET;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [out, count, size, tag] = args.as_slice() else {
        return Err("usage: load_presign OUT COUNT BODY_BYTES TAG".into());
    };
    let (count, size): (u64, usize) = (count.parse()?, size.parse()?);
    let tag: String = tag.chars().chain(std::iter::repeat('0')).take(4).collect();
    let prefix = r#"{"id":"del_01HZ1A2B3C4D5E6F7G8H9J0K","eventId":""#;
    let head = r#"","type":"mapping.completed","apiVersion":"2026-06-01","createdAt":"2026-06-07T12:01:00Z","data":{"mappingJobId":"job_01HZ1A2B3C","status":"COMPLETED","rowCount":4821,"exportFileId":"ef_01HZ1A2B3C","note":""#;
    let tail = r#""}}"#;
    let pad = size
        .checked_sub(prefix.len() + 30 + head.len() + tail.len())
        .ok_or("body too small")?;
    let suffix: String = head
        .chars()
        .chain("rows mapped to the export ".chars().cycle().take(pad))
        .chain(tail.chars())
        .collect();

    let signer = Signer::new(Secret::new(DEV_SECRET)?);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let mut file = BufWriter::new(std::fs::File::create(out)?);
    writeln!(file, "{prefix}")?;
    writeln!(file, "{suffix}")?;
    let mut body = Vec::with_capacity(size);
    for n in 0..count {
        let id = format!("evt_{tag}{n:022}");
        body.clear();
        body.extend_from_slice(prefix.as_bytes());
        body.extend_from_slice(id.as_bytes());
        body.extend_from_slice(suffix.as_bytes());
        debug_assert_eq!(body.len(), size);
        writeln!(file, "{id}\t{}", signer.sign(&body, now))?;
    }
    file.flush()?;
    Ok(())
}
