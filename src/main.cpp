#include <localdns/app/run.hpp>

int main(int argc, char** argv) {
  return localdns::app::run_main(argc, argv);
}
