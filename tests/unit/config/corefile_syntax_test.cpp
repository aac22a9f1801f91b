// Corefile syntax: tokens, blocks, snippets, imports, environment, errors.
#include <catch2/catch.hpp>

#include <localdns/config/corefile_syntax.hpp>

using namespace localdns::config::corefile;
