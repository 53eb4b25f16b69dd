// Package examples holds no code: its tests run the command lines of the CI and Spinnaker examples in
// this directory (README.md) against loopback servers, so that the examples cannot rot.
package examples
