"""meldpunt's test suite; a package so test modules never shadow the packages they test."""
