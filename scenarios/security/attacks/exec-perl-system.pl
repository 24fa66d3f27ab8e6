# perl's system() with shell metacharacters → /bin/sh -c
use strict;
my $mark = $ENV{MARK};
my $rc = system("echo pwned > $mark");
my $through = -e $mark ? "true" : "false";
print "{\"through\": $through, \"detail\": \"perl system(): status $rc\"}\n";
