// Prints a greeting for argv[1] (default "world") and a computed value. Deterministic.
#include <cstdio>

#include "src/greet.h"

int main(int argc, char** argv) {
  const char* name = argc > 1 ? argv[1] : "world";
  std::printf("%s\ntriangle(10) = %d\n", Greeting(name).c_str(), Triangle(10));
  return 0;
}
