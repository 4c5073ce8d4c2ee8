//! `lspacket`: MultiSite's packet listing, with the local replica's view.

use packet_format::{render_listing_with, Examination, Header, SignatureStatus, Target};
use serde_json::json;

use crate::error::{printable, printable_path};
use crate::sync::epochs::LocalView;
use std::path::PathBuf;

/// Whether a listed packet should make lspacket exit non-zero.
pub fn is_problem(exam: &Examination) -> bool {
    exam.error.is_some() || !matches!(exam.signature, Some(SignatureStatus::Verified))
}

fn note_for(view: Option<&LocalView>, header: &Header, target: &Target) -> Option<String> {
    let view = view?;
    (target.id == view.replica).then(|| format!("(local: {})", view.readiness(header)))
}

/// Text listing of one packet. A damaged or unverified packet gets no
/// readiness note: it cannot be applied, whatever its epochs say.
///
/// The listing escapes the names and comment it takes from the header,
/// but for the family name; that, and the file's path (a name from
/// elsewhere when it sits in a bay), are made printable here first.
pub fn render_text(mut exam: Examination, long: bool, view: Option<&LocalView>) -> String {
    let header = exam.header.clone().filter(|_| !is_problem(&exam));
    exam.path = PathBuf::from(printable_path(&exam.path));
    if let Some(header) = exam.header.as_mut() {
        header.family.name = printable(&header.family.name).into_owned();
    }
    render_listing_with(&exam, long, &|target| {
        header.as_ref().and_then(|h| note_for(view, h, target))
    })
}

/// JSON object for one packet.
pub fn render_json(exam: &Examination, view: Option<&LocalView>) -> serde_json::Value {
    let signature = exam.signature.as_ref().map(|s| match s {
        SignatureStatus::Verified => json!({"status": "verified"}),
        SignatureStatus::UnknownKey { fingerprint } => {
            json!({"status": "unknown key", "fingerprint": fingerprint})
        }
        SignatureStatus::Bad { fingerprint } => {
            json!({"status": "bad", "fingerprint": fingerprint})
        }
    });
    let mut value = json!({
        "path": exam.path.display().to_string(),
        "size": exam.size,
        "damaged": exam.error.as_ref().map(|e| e.to_string()),
        "signature": signature,
    });
    if let Some(header) = &exam.header {
        let targets: Vec<_> = header
            .targets
            .iter()
            .map(|t| {
                let local = view.is_some_and(|v| v.replica == t.id);
                json!({
                    "name": t.name,
                    "id": t.id.to_hex(),
                    "sequence": t.seq,
                    "local": local,
                    "status": view
                        .filter(|_| local && !is_problem(exam))
                        .map(|v| v.readiness(header).to_string()),
                })
            })
            .collect();
        let ranges: serde_json::Map<String, serde_json::Value> = header
            .epoch_ranges
            .iter()
            .map(|(origin, r)| (origin.to_hex(), json!({"first": r.first, "last": r.last})))
            .collect();
        value["type"] = json!(match header.kind {
            packet_format::PacketKind::Update => "Update".to_string(),
            packet_format::PacketKind::ReplicaCreation => "Replica Creation".to_string(),
            packet_format::PacketKind::Unknown(code) => format!("Unknown ({code})"),
        });
        value["family"] = json!({"name": header.family.name, "id": header.family.id.to_hex()});
        value["sender"] = json!({"name": header.sender.name, "id": header.sender.id.to_hex()});
        value["packet_id"] = json!(header.packet_id.to_hex());
        value["comment"] = json!(header.comment);
        value["part"] = json!(header.part);
        value["parts"] = json!(header.parts);
        value["created"] = json!(packet_format::utc_display(header.created.secs));
        value["format_version"] =
            json!(format!("{}.{}", header.version.major, header.version.minor));
        value["targets"] = json!(targets);
        value["epoch_ranges"] = json!(ranges);
        // The sender copy's incarnation (format 2.1; clone detection).
        value["sender_incarnation"] = json!(header.incarnation.map(|id| id.to_hex()));
        // To whom the contents are encrypted (format 2.5); null: in the clear.
        value["encryption"] = json!(header.encryption.as_ref().map(|e| json!({
            "recipients": e.recipients.iter().map(|r| json!({
                "id": r.id.to_hex(),
                "key": r.key,
            })).collect::<Vec<_>>(),
            "passphrase": e.passphrase,
        })));
        // The sender's tree digest at its epoch row (format 2.2; proof of
        // convergence). The patterns are text from elsewhere, kept as data.
        value["tree_digest"] = json!(header.tree_digest.as_ref().map(|d| json!({
            "root": hex::encode(d.root),
            "entries": d.entries,
            "patterns": d.patterns,
            "assumed_target_patterns": hex::encode(d.assumed),
            "nodes": d.nodes.len(),
        })));
    }
    value
}

/// Text lines about a packet's shipping order (after its listing).
pub fn render_order_text(order: &shipping::ShippingOrder, returned: bool) -> String {
    use shipping::order::format_time;
    let mut out = String::new();
    if returned {
        out.push_str(&format!(
            "Returned: expired at {} before reaching {}\n",
            format_time(&order.expires),
            printable(&order.destinations.join(", "))
        ));
    } else {
        out.push_str(&format!(
            "Shipping order: to {}; created {}; expires {}\n",
            printable(&order.destinations.join(", ")),
            format_time(&order.created),
            format_time(&order.expires)
        ));
    }
    for (destination, attempts) in &order.attempts {
        out.push_str(&format!(
            "  delivery to {}: {} failed attempt{}, last at {}: {}; next try after {}\n",
            printable(destination),
            attempts.failures,
            if attempts.failures == 1 { "" } else { "s" },
            format_time(&attempts.last_attempt),
            // May quote what a remote server answered.
            printable(&attempts.last_error),
            format_time(&attempts.next_retry)
        ));
    }
    out
}

/// JSON object for a packet's shipping order.
pub fn render_order_json(order: &shipping::ShippingOrder) -> serde_json::Value {
    use shipping::order::format_time;
    let attempts: serde_json::Map<String, serde_json::Value> = order
        .attempts
        .iter()
        .map(|(d, a)| {
            (
                d.clone(),
                json!({
                    "failures": a.failures,
                    "last_attempt": format_time(&a.last_attempt),
                    "last_error": a.last_error,
                    "next_retry": format_time(&a.next_retry),
                }),
            )
        })
        .collect();
    json!({
        "destinations": order.destinations,
        "created": format_time(&order.created),
        "expires": format_time(&order.expires),
        "attempts": attempts,
    })
}
