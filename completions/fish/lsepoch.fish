complete -c lsepoch -o replica -d 'The replica\'s root. Without it, the current directory and then its parents are searched for a replica' -r -F
complete -c lsepoch -s h -o help -d 'Print help (see more with \'-help\')'
complete -c lsepoch -s V -o version -d 'Print version'
