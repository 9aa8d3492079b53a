using CsCheck;
using Vfio.VirtioNet.Virtio;
using static Vfio.Spec.Virtio.VirtioFeatures;

namespace Vfio.VirtioNet.Tests;

public sealed class FeatureNegotiationTests
{
    private const ulong Wanted = NetMac | NetStatus | NetMergeRxBuffers;

    [Fact]
    public void AcceptsOnlyWhatIsBothOfferedAndUnderstood()
    {
        ulong offered = Version1 | NetMac | NetCsum | RingEventIndex | RingPacked | NetMergeRxBuffers;
        var r = FeatureNegotiation.Negotiate(offered, Version1, Wanted, translatedDma: false);
        Assert.True(r.Succeeded);
        Assert.Equal(Version1 | NetMac | NetMergeRxBuffers, r.Accepted);
    }

    [Fact]
    public void RequiresVersion1()
    {
        var r = FeatureNegotiation.Negotiate(NetMac | NetStatus, Version1, Wanted, translatedDma: false);
        Assert.False(r.Succeeded);
        Assert.Contains("VERSION_1", r.Error);
    }

    [Fact]
    public void AcceptsAccessPlatformWhenOffered()
    {
        Assert.Equal(Version1 | AccessPlatform, FeatureNegotiation.Negotiate(Version1 | AccessPlatform, Version1, Wanted, translatedDma: true).Accepted);
        Assert.Equal(Version1 | AccessPlatform, FeatureNegotiation.Negotiate(Version1 | AccessPlatform, Version1, Wanted, translatedDma: false).Accepted);
    }

    [Fact]
    public void RefusesADeviceThatWouldBypassTheIommu()
    {
        var r = FeatureNegotiation.Negotiate(Version1 | NetMac, Version1, Wanted, translatedDma: true);
        Assert.False(r.Succeeded);
        Assert.Contains("ACCESS_PLATFORM", r.Error);
        Assert.Contains("iommu_platform=on", r.Error);
    }

    [Fact]
    public void AcceptedIsAlwaysASubsetOfOfferedAndContainsTheRequired()
    {
        Gen.Select(Gen.ULong, Gen.ULong, Gen.Bool).Sample((offered, wanted, translated) =>
        {
            var r = FeatureNegotiation.Negotiate(offered, Version1, wanted, translated);
            if (!r.Succeeded) { return (offered & Version1) == 0 || (translated && (offered & AccessPlatform) == 0); }
            return (r.Accepted & ~offered) == 0 && (r.Accepted & Version1) != 0 && (r.Accepted & (wanted & offered)) == (wanted & offered);
        });
    }
}
