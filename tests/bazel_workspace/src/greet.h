#ifndef CAIRN_TEST_GREET_H_
#define CAIRN_TEST_GREET_H_

#include <string>

// Returns "hello, <name>!".
std::string Greeting(const std::string& name);

// Returns 1 + 2 + ... + n.
int Triangle(int n);

#endif  // CAIRN_TEST_GREET_H_
