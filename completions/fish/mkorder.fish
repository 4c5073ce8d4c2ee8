complete -c mkorder -o data -d 'The packet file to submit; repeat -data for several (-data A.zip -data B.zip): a second file after one -data is taken for a DESTINATION, and refused. A packet in a bay on S3 is named by its URL, s3://BUCKET/PREFIX/BAY/PACKET (BAY the outgoing, incoming or return bay of a storage class in the shipping configuration), as the expiry notice names a returned packet' -r -F
complete -c mkorder -o pexpire -d 'When packets put into a storage bay expire if undelivered: days (7 or 7d), hours (12h), seconds (90s), a date (2026-12-01) or an RFC 3339 time (default: the storage class\'s expiry_days, 14)' -r
complete -c mkorder -o shipconf -d 'The shipping configuration to use, instead of looking in $SYNCREPLICA_SHIPPING_CONF, the user\'s config directory and /etc/syncreplica/shipping.toml' -r -F
complete -c mkorder -o sclass -d 'Storage class whose outgoing bay takes the packets (default: "default")' -r
complete -c mkorder -o ship -d 'Leave the packets for the next `shipping_server -poll` (the default)'
complete -c mkorder -o fship -d 'Deliver to the first hop at once; a failed delivery stays queued'
complete -c mkorder -o copy -d 'Keep the packet files where they are (without it they are moved into the storage bay)'
complete -c mkorder -s q -o quiet -d 'No progress line and no summary lines, only warnings and errors (on standard error). The progress line of -fship\'s deliveries is shown only when standard error is a terminal, once a delivery has run for a second'
complete -c mkorder -s h -o help -d 'Print help (see more with \'-help\')'
complete -c mkorder -s V -o version -d 'Print version'
