complete -c lsreplica -o replica -d 'The replica\'s root. Without it, the current directory and then its parents are searched for a replica' -r -F
complete -c lsreplica -o long -d 'Also show each member\'s public key (64 hex digits, what a relay host\'s shipping.toml lists in trusted_keys) and what this replica knows of it: the last packet sent to it and received from it, and its epoch row'
complete -c lsreplica -s h -o help -d 'Print help (see more with \'-help\')'
complete -c lsreplica -s V -o version -d 'Print version'
