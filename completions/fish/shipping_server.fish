complete -c shipping_server -o shipconf -d 'The shipping configuration to use, instead of looking in $SYNCREPLICA_SHIPPING_CONF, the user\'s config directory and /etc/syncreplica/shipping.toml (in that order)' -r -F
complete -c shipping_server -o sclass -d 'Storage class to work on: with -poll, only this class\'s orders (default: every class); with -listen, the class whose bays receive packets (default: "default")' -r
complete -c shipping_server -o interval -d 'With -poll: keep running, one pass every SECS seconds, until SIGTERM or SIGINT' -r
complete -c shipping_server -o listen -d 'Receive packets over HTTP (PUT /packets/NAME) on ADDR (IP:PORT; default: `listen` in shipping.toml) until SIGTERM or SIGINT. Only packets signed by a trusted key are stored. With -poll, also forwards (every -interval seconds, default 60)' -r
complete -c shipping_server -o poll -d 'Work through every shipping order in the outgoing bays: deliver each packet through the next hop of each destination\'s route, retry failed deliveries whose backoff has passed, and move expired packets to the return bay (running the notify program). Exits 1 when a delivery failed (it stays queued and is retried at a later pass)'
complete -c shipping_server -s h -o help -d 'Print help'
complete -c shipping_server -s V -o version -d 'Print version'
