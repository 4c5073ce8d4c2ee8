//! `mkorder`: submit packet files to the shipping system.

use syncreplica::cli::{self, mkorder::Args};
use syncreplica::ship::{self, Shipping};

const NAME: &str = "mkorder";

fn main() {
    let args: Args = cli::parse_args();
    cli::run(NAME, || run(&args))
}

fn run(args: &Args) -> anyhow::Result<()> {
    let shipping = Shipping::load(args.bays.shipconf.as_deref())?;
    let class = shipping.class_name(args.sclass.as_deref())?;
    let now = chrono::Utc::now();
    let expires = match &args.bays.pexpire {
        Some(text) => Some(ship::parse_expiry(text, now)?),
        None => None,
    };
    let submitted = ship::submit_files(
        &shipping,
        &class,
        &args.data,
        &args.destinations,
        expires,
        args.copy,
        now,
    )?;
    for item in &submitted {
        println!(
            "Submitted {} for {} in storage class {class} (order {}/{}; expires {}).",
            item.order.packet,
            item.order.destinations.join(", "),
            item.bay.display(),
            shipping::order::order_name(&item.order.packet),
            shipping::order::format_time(&item.order.expires)
        );
    }
    if args.fship {
        let names: Vec<String> = submitted.iter().map(|s| s.order.packet.clone()).collect();
        let report = shipping.forward_now(&class, &names, &|line| println!("  {line}"))?;
        if !report.is_clean() {
            anyhow::bail!(
                "{}; the packets stay queued and shipping_server -poll retries them",
                report.summary()
            );
        }
    }
    Ok(())
}
