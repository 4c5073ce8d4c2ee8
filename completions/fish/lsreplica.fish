complete -c lsreplica -o fmt -d 'Output format: text (MultiSite\'s listing) or json (for scripts; a "version" field gives the shape\'s version)' -r -f -a "text\t'MultiSite\'s text listing'
json\t'JSON, for scripts'"
complete -c lsreplica -o replica -d 'The replica\'s root. Without it, the current directory and then its parents are searched for a replica' -r -F
complete -c lsreplica -o long -d 'Also show each member\'s public key (64 hex digits, what a relay host\'s shipping.toml lists in trusted_keys), the packet format it writes (its newest packet here says; exports to it carry nothing that format predates), and what this replica knows of it: the last packet sent to it and received from it, when it was last heard from, the changes it has not confirmed having, its epoch row, any clone alarm about it, its removal, when this replica\'s tree was last verified the same as its (the tree digest of its packets; see syncreplica -verify), and for this replica the size of its operation log (operations, bytes) and what an unfinished restore waits for'
complete -c lsreplica -s h -o help -d 'Print help (see more with \'-help\')'
complete -c lsreplica -s V -o version -d 'Print version'
