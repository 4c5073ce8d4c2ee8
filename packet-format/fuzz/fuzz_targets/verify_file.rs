//! Arbitrary bytes as a packet file: zip structure, header prefix and
//! signature handling must reject without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("pf-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("input.zip");
    std::fs::write(&path, data).unwrap();
    let trusted = [ed25519_dalek::SigningKey::from_bytes(&[0x11; 32])
        .verifying_key()
        .to_bytes()];
    let exam = packet_format::examine_packet(&path, &trusted);
    let _ = packet_format::render_listing(&exam, true);
    if let Ok(packet) = packet_format::verify_packet(&path, &trusted) {
        for piece in packet.chunk_pieces().unwrap() {
            let _ = piece;
        }
        for record in packet.operation_records().unwrap() {
            let _ = record;
        }
    }
});
