namespace Vfio.Spec.Virtio;

/// <summary>Device status bits (virtio 1.2 §2.1 "Device Status Field").</summary>
[Flags]
public enum VirtioStatus : byte
{
    /// <summary>Zero: writing it resets the device; reading it back means the reset finished.</summary>
    Reset = 0,
    /// <summary>The guest has noticed the device.</summary>
    Acknowledge = 1,
    /// <summary>The guest knows how to drive the device.</summary>
    Driver = 2,
    /// <summary>The driver is set up and ready to drive the device.</summary>
    DriverOk = 4,
    /// <summary>Feature negotiation is complete.</summary>
    FeaturesOk = 8,
    /// <summary>The device hit an error it cannot recover from without a reset.</summary>
    DeviceNeedsReset = 64,
    /// <summary>The driver gave up on the device.</summary>
    Failed = 128,
}
