# Facts of a Debian-family host that perl can read in one process (run by facts.sh, which
# says when): the packages from dpkg's status file, then `stat` and `head` of the managed
# paths, in exactly the records those commands print (parsed by src/host/facts.rs).
#
# Why: on a real host `dpkg-query` alone costs about 9 ms of CPU (it loads dpkg's whole
# database); this whole program costs about 2, as one process where there were three.
# perl-base is Essential on Debian and Ubuntu: it is on every such host. Only perl's built-in
# functions are used (no module is loaded), and no line of this file may start a string that
# continues on the next line: the controller sends it without comments and indentation.
#
# Arguments: MAX NPKG PACKAGE... PATH...
#   MAX: the largest managed file to read, in bytes (as head -c).
#   NPKG PACKAGE...: the packages to report from /var/lib/dpkg/status, which facts.sh has
#   found to be the whole truth (no update journal waiting); NPKG 0 when dpkg-query answers.
#   PATH...: the paths that exist (facts.sh has reported the absent ones).
# Exit status: 0, or 1 when a file could not be read (head's).
binmode STDOUT;
my ($max, $npkg) = splice @ARGV, 0, 2;
my %want = map { $_ => 1 } splice @ARGV, 0, $npkg;

# dpkg-query's ${db:Status-Abbrev}, from the Status field's three words (want, error flag,
# status); a word dpkg does not write becomes `?`, which the controller refuses.
my %want_letter = (unknown => 'u', install => 'i', hold => 'h', deinstall => 'r', purge => 'p');
my %status_letter = (
    'not-installed' => 'n', 'config-files' => 'c', 'half-installed' => 'H', unpacked => 'U',
    'half-configured' => 'F', 'triggers-awaited' => 'W', 'triggers-pending' => 't',
    installed => 'i',
);
my %flag_letter = (ok => '', reinstreq => 'R');
if (%want && open my $db, '<', '/var/lib/dpkg/status') {
    # One paragraph per package (deb822); the Conffiles lines are printed as dpkg-query
    # prints ${Conffiles}: ` PATH MD5[ FLAG]` each.
    local $/ = '';
    while (my $para = <$db>) {
        next unless $para =~ /^Package: (\S+)$/m && $want{$1};
        my $name = $1;
        my ($want, $flag, $status) = $para =~ /^Status: (\S+) (\S+) (\S+)$/m;
        my ($version) = $para =~ /^Version: (\S*)$/m;
        my ($conffiles) = $para =~ /^Conffiles:\n((?: .*\n)*)/m;
        # As dpkg reads its database: a package neither installed nor wanted is unknown
        # (`un`), with no version.
        if (($status // '') eq 'not-installed' && ($want // '') =~ /^(?:deinstall|purge|unknown)$/) {
            ($want, $version) = ('unknown', undef);
        }
        my $abbrev = join '', map { $_ // '?' } $want_letter{$want // ''},
            $status_letter{$status // ''}, $flag_letter{$flag // ''};
        print '@@pkg ', $name, ' ', $abbrev, defined $version ? " $version" : '', "\n",
            $conffiles // '';
    }
}

# `stat -c '@@stat %f %s %a %U %G %n'`: the link itself, not what it points to; a path gone
# since facts.sh looked is left out, as stat leaves it (and then it is not read either).
my (%user, %group, @read);
for my $path (@ARGV) {
    my @st = lstat $path or next;
    push @read, $path if -f _;
    my ($mode, $uid, $gid, $size) = @st[2, 4, 5, 7];
    $user{$uid} //= (getpwuid $uid)[0] // 'UNKNOWN';
    $group{$gid} //= (getgrgid $gid)[0] // 'UNKNOWN';
    printf '@@stat %x %d %o %s %s %s' . "\n", $mode, $size, $mode & 07777, $user{$uid},
        $group{$gid}, $path;
}

# `head -q -c MAX` of the regular files, back to back (the controller splits them by size).
print '@@files', "\n";
my $failed = 0;
for my $path (@read) {
    my $file;
    unless (open $file, '<', $path) {
        print STDERR "facts: $path: $!\n";
        $failed = 1;
        next;
    }
    binmode $file;
    my $left = $max;
    while ($left > 0) {
        my $got = sysread $file, my $chunk, $left < 65536 ? $left : 65536;
        unless (defined $got) {
            print STDERR "facts: $path: $!\n";
            $failed = 1;
            last;
        }
        last if $got == 0;
        print $chunk;
        $left -= $got;
    }
}
exit $failed;
