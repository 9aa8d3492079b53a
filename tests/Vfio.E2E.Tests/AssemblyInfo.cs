// The suite drives one physical (emulated) device; VFIO lets one open at a time, so tests run one by one.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
