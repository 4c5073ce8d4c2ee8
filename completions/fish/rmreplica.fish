complete -c rmreplica -o replica -d 'The replica\'s root. Without it, the current directory and then its parents are searched for a replica' -r -F
complete -c rmreplica -o force -d 'Remove without asking for confirmation'
complete -c rmreplica -s h -o help -d 'Print help (see more with \'-help\')'
complete -c rmreplica -s V -o version -d 'Print version'
