using System.Reflection;

namespace Vfio.Architecture.Tests;

/// <summary>
/// One exception hierarchy: every exception type a library makes public derives from <see cref="VfioException"/>,
/// so that one catch clause (and the CLI's one mapping to exit codes) sees every error the libraries report.
/// </summary>
public sealed class ExceptionHierarchyTests
{
    public static TheoryData<string> Libraries() =>
        [.. Layers.AllowedReferences.Keys.Where(a => a != Layers.Cli)];

    [Theory]
    [MemberData(nameof(Libraries))]
    public void PublicExceptionsDeriveFromVfioException(string assembly)
    {
        var outside = Layers.Load(assembly).GetExportedTypes()
            .Where(t => typeof(Exception).IsAssignableFrom(t) && !typeof(VfioException).IsAssignableFrom(t))
            .Select(t => $"{t.FullName} : {t.BaseType?.FullName}")
            .ToList();
        Assert.True(outside.Count == 0, $"{assembly} makes public exceptions outside VfioException: {string.Join(", ", outside)}");
    }

    [Fact]
    public void TheRuleSeesTheExceptionsThatExist()
    {
        // The drivers' and transports' own exception types are found, and they are inside the hierarchy.
        string[] Exceptions(string a) => [.. Layers.Load(a).GetExportedTypes().Where(t => typeof(Exception).IsAssignableFrom(t)).Select(t => t.Name)];
        Assert.Contains("NvmeTimeoutException", Exceptions(Layers.Nvme));
        Assert.Contains("VirtioNetException", Exceptions(Layers.VirtioNet));
        Assert.Contains("PacketPoolDoubleFreeException", Exceptions(Layers.Net));
        Assert.Contains("IgbQueueFaultedException", Exceptions(Layers.Igb));
        Assert.Contains("VfioUserProtocolException", Exceptions(Layers.User));
        Assert.Contains("DeviceTimeoutException", Exceptions(Layers.Core));
    }
}
