complete -c lspacket -o fmt -d 'Output format: text (MultiSite\'s listing) or json (for scripts)' -r -f -a "text\t'MultiSite\'s text listing'
json\t'JSON, for scripts'"
complete -c lspacket -o replica -d 'The replica whose family keys and epochs to check against. Without it, the current directory and its parents are searched; outside a replica, packets are still listed' -r -F
complete -c lspacket -o sclass -d 'With no PACKET_OR_DIR: list only this storage class\'s bays' -r
complete -c lspacket -o shipconf -d 'The shipping configuration whose bays are listed, instead of looking in $SYNCREPLICA_SHIPPING_CONF, the user\'s config directory and /etc/syncreplica/shipping.toml' -r -F
complete -c lspacket -o long -d 'Add the packet id, sender, creation time, epoch range per origin, the sender\'s epoch row, format version, size, signature status, and the tree digest (entries, root, and the metadata items it covers and the sender preserves)'
complete -c lspacket -o short -d 'Print only the paths of the packets'
complete -c lspacket -s h -o help -d 'Print help (see more with \'-help\')'
complete -c lspacket -s V -o version -d 'Print version'
