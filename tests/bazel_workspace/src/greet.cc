#include "src/greet.h"

std::string Greeting(const std::string& name) { return "hello, " + name + "!"; }

int Triangle(int n) {
  int sum = 0;
  for (int i = 1; i <= n; ++i) sum += i;
  return sum;
}
