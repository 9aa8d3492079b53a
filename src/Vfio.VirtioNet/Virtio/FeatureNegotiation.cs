using Vfio.Spec.Virtio;

namespace Vfio.VirtioNet.Virtio;

/// <summary>The outcome of feature negotiation: what to write to driver_feature, or why the device is unusable.</summary>
/// <param name="Accepted">The features the driver accepts (a subset of the offer).</param>
/// <param name="Error">Null on success; otherwise why the driver cannot drive this device.</param>
public readonly record struct FeatureNegotiation(ulong Accepted, string? Error)
{
    /// <summary>True when the driver can proceed with <see cref="Accepted"/>.</summary>
    public bool Succeeded => Error is null;

    /// <summary>
    /// Negotiates as virtio 1.2 §3.1.1 step 4 asks: accept only offered features the driver understands.
    /// <paramref name="required"/> bits must all be offered; <paramref name="wanted"/> bits are taken when offered.
    /// When <paramref name="translatedDma"/> (an IOMMU gives the device IOVAs), ACCESS_PLATFORM must be offered
    /// and is accepted: without it the device would treat IOVAs as physical addresses (§6.1: a driver SHOULD
    /// accept it when offered, and "the device MAY fail to operate further" otherwise). Offered without
    /// translation, it is accepted too: the platform then translates nothing and the addresses are the same.
    /// </summary>
    public static FeatureNegotiation Negotiate(ulong offered, ulong required, ulong wanted, bool translatedDma)
    {
        ulong missing = required & ~offered;
        if (missing != 0)
        {
            return new(0, $"the device does not offer required features {VirtioFeatures.Describe(missing)} (offered: {VirtioFeatures.Describe(offered)})");
        }
        if (translatedDma && (offered & VirtioFeatures.AccessPlatform) == 0)
        {
            return new(0, "DMA goes through an IOMMU but the device does not offer ACCESS_PLATFORM, so it would bypass " +
                "translation and write to physical addresses; give the device iommu_platform=on");
        }
        ulong accepted = (required | wanted | VirtioFeatures.AccessPlatform) & offered;
        return new(accepted, null);
    }
}
