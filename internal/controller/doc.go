// Package controller holds berth's control loops, one per sub-package,
// each with New(deps)/Run(ctx) and one kind of write it owns:
//
//   - deployment: creates and stops instances to match each app's spec
//     (count, revision rollout, deletion);
//   - placement: assigns pending instances to nodes through the pure
//     scheduler and commits plans with optimistic concurrency;
//   - nodes: marks nodes down when their heartbeats stop;
//   - subnets: gives each node a subnet of the cluster CIDR (Node.Subnet,
//     /subnets/ keys) and releases it when the node is removed.
//
// Loops communicate only through the store.
package controller
