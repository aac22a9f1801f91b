// The localdns executable: the command line, then the command it names. A
// run (no command, or the node-cache flags) sets up the node, binds every
// listener, serves until SIGINT or SIGTERM, and releases what it set up in
// reverse order on every way out. Called once, on the main thread.
#pragma once

namespace localdns::app {

// Entry point of the localdns executable; returns the exit status.
int run_main(int argc, char** argv);

}  // namespace localdns::app
