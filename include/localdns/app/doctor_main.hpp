// `localdns doctor ARGS...`: parses the doctor's flags and localdns's config
// (--config and the node flags), builds doctor::Inputs, and runs the doctor.
// The caller's thread only.
#pragma once

#include <string>
#include <vector>

namespace localdns::app {

// The command's exit code: 0, 1, 2 (the doctor's verdict), 64 for a usage
// error or a config that does not load.
int doctor_main(const std::vector<std::string>& args);

}  // namespace localdns::app
