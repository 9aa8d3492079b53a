using System.Reflection;
using NetArchTest.Rules;

namespace Vfio.Architecture.Tests;

/// <summary>
/// Namespace-level rules, read from the IL by NetArchTest (fields, signatures and method bodies): inside Vfio.Core each
/// layer uses only the ones below it; drivers and models see the device abstraction, not a transport; vfio-user's
/// server and the specs know nothing of the kernel.
/// </summary>
public sealed class NamespaceLayerTests
{
    private static Assembly Core => Layers.Load(Layers.Core);

    public static TheoryData<string> CoreLayers() => [.. Layers.CoreNamespaces];

    [Fact]
    public void CoreHasOnlyTheDocumentedNamespaces()
    {
        var namespaces = Core.GetTypes()
            .Select(t => t.Namespace)
            .Where(n => n is not null && (n == "Vfio" || n.StartsWith("Vfio.", StringComparison.Ordinal)))
            .Distinct()
            .ToList();
        var unknown = namespaces.Except(Layers.CoreNamespaces).ToList();
        Assert.True(unknown.Count == 0,
            $"Vfio.Core has namespaces with no place in Layers.CoreNamespaces: {string.Join(", ", unknown)}");
        Assert.Equal(Layers.CoreNamespaces.Order(), namespaces.Order()!);
    }

    [Theory]
    [MemberData(nameof(CoreLayers))]
    public void CoreLayerUsesOnlyTheLayersBelowIt(string layer)
    {
        int i = Array.IndexOf(Layers.CoreNamespaces, layer);
        string[] above = Layers.CoreNamespaces[(i + 1)..];
        if (above.Length == 0) { return; }                      // the top layer may use every other
        var result = InLayer(layer).ShouldNot().HaveDependencyOnAny(above).GetResult();
        Assert.True(result.IsSuccessful, Describe(result, $"{layer} uses {string.Join(" or ", above)}, which README \"Layers\" puts above it"));
    }

    [Theory]
    [InlineData(Layers.Nvme)]
    [InlineData(Layers.VirtioNet)]
    [InlineData(Layers.Net)]
    [InlineData(Layers.Igb)]
    public void DriversSeeOnlyTheDeviceAbstraction(string driver)
    {
        var result = Types.InAssembly(Layers.Load(driver)).ShouldNot()
            .HaveDependencyOnAny("Vfio.Kernel", "Vfio.User", "Vfio.Linux", "Vfio.Emulation").GetResult();
        Assert.True(result.IsSuccessful, Describe(result, $"{driver} reaches past IPciDevice into a transport"));
    }

    [Fact]
    public void ModelsUseTheServerLibraryAndTheSpecsOnly()
    {
        var result = Types.InAssembly(Layers.Load(Layers.Emulation)).ShouldNot()
            .HaveDependencyOnAny("Vfio.Kernel", "Vfio.User.Client", "Vfio.Nvme", "Vfio.VirtioNet", "Vfio.Net").GetResult();
        Assert.True(result.IsSuccessful, Describe(result, "a device model uses a transport client or a driver"));
    }

    [Fact]
    public void ThePortAbstractionKnowsNoDriver()
    {
        // The registry is filled by the application; Vfio.Net names no driver, so a new one never edits it.
        var result = Types.InAssembly(Layers.Load(Layers.Net)).ShouldNot()
            .HaveDependencyOnAny("Vfio.VirtioNet", "Vfio.Igb", "Vfio.Nvme", "Vfio.Spec").GetResult();
        Assert.True(result.IsSuccessful, Describe(result, "Vfio.Net uses a driver or a device spec"));
        Assert.False(Types.InAssembly(Layers.Load(Layers.VirtioNet)).ShouldNot().HaveDependencyOn("Vfio.Net").GetResult().IsSuccessful);
    }

    [Fact]
    public void VfioUserIsATransportBesideKernelVfio()
    {
        var result = Types.InAssembly(Layers.Load(Layers.User)).ShouldNot()
            .HaveDependencyOnAny("Vfio.Kernel", "Vfio.Emulation").GetResult();
        Assert.True(result.IsSuccessful, Describe(result, "vfio-user uses the kernel VFIO transport or a model"));
    }

    [Theory]
    [InlineData(Layers.SpecNvme)]
    [InlineData(Layers.SpecVirtio)]
    public void SpecsAreDefinitionsOnly(string spec)
    {
        var result = Types.InAssembly(Layers.Load(spec)).ShouldNot()
            .HaveDependencyOnAny("Vfio.Kernel", "Vfio.Linux", "Vfio.Host", "Vfio.User", "Vfio.Devices").GetResult();
        Assert.True(result.IsSuccessful, Describe(result, $"{spec} uses more of Core than its addresses"));
    }

    [Fact]
    public void TheRulesSeeTheDependenciesThatExist()
    {
        // A rule that never fires proves nothing: the same checks find the dependencies that must be there.
        Assert.False(InLayer("Vfio.Kernel").ShouldNot().HaveDependencyOn("Vfio.Devices").GetResult().IsSuccessful);
        Assert.False(InLayer("Vfio.Devices").ShouldNot().HaveDependencyOn("Vfio.Dma").GetResult().IsSuccessful);
        Assert.False(Types.InAssembly(Layers.Load(Layers.Emulation)).ShouldNot().HaveDependencyOn("Vfio.User.Server").GetResult().IsSuccessful);
        Assert.False(Types.InAssembly(Layers.Load(Layers.Nvme)).ShouldNot().HaveDependencyOn("Vfio.Devices").GetResult().IsSuccessful);
    }

    /// <summary>The types of one Core layer: the root namespace means the types directly in <c>Vfio</c>.</summary>
    private static PredicateList InLayer(string layer)
    {
        if (layer != "Vfio") { return Types.InAssembly(Core).That().ResideInNamespace(layer); }
        var predicates = Types.InAssembly(Core).That().ResideInNamespace("Vfio");
        foreach (var sub in Layers.CoreNamespaces.Skip(1)) { predicates = predicates.And().DoNotResideInNamespace(sub); }
        return predicates;
    }

    private static string Describe(NetArchTest.Rules.TestResult result, string what) =>
        result.IsSuccessful ? what : $"{what}: {string.Join(", ", result.FailingTypeNames ?? [])}";
}
