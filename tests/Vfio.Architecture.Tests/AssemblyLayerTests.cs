using System.Reflection;
using System.Runtime.CompilerServices;

namespace Vfio.Architecture.Tests;

/// <summary>
/// Assembly-level rules: which product assembly may reference which, declared (the project file) and compiled (the
/// metadata the compiler kept), and no InternalsVisibleTo between product assemblies.
/// </summary>
public sealed class AssemblyLayerTests
{
    public static TheoryData<string> ProductAssemblies() => [.. Layers.AllowedReferences.Keys];

    [Fact]
    public void EverySourceProjectHasALayer()
    {
        var projects = Layers.SourceProjects();
        Assert.NotEmpty(projects);
        var unknown = projects.Where(p => !Layers.AllowedReferences.ContainsKey(p.AssemblyName)).Select(p => p.Path).ToList();
        Assert.True(unknown.Count == 0,
            $"these src/ projects have no place in the layer table of tests/Vfio.Architecture.Tests/Layers.cs: {string.Join(", ", unknown)}");
        var missing = Layers.AllowedReferences.Keys.Except(projects.Select(p => p.AssemblyName)).ToList();
        Assert.True(missing.Count == 0, $"the layer table names assemblies no src/ project builds: {string.Join(", ", missing)}");
    }

    [Fact]
    public void ProjectReferencesFollowTheLayers()
    {
        var violations = new List<string>();
        foreach (var p in Layers.SourceProjects())
        {
            if (!Layers.AllowedReferences.TryGetValue(p.AssemblyName, out var allowed)) { continue; } // the test above names it
            violations.AddRange(p.References.Except(allowed).Select(r => $"{Path.GetFileName(p.Path)} references {r}"));
        }
        Assert.True(violations.Count == 0, "project references against README \"Layers\": " + string.Join("; ", violations));
    }

    [Theory]
    [MemberData(nameof(ProductAssemblies))]
    public void CompiledReferencesFollowTheLayers(string assembly)
    {
        var products = Layers.AllowedReferences.Keys.ToHashSet(StringComparer.Ordinal);
        var referenced = Layers.Load(assembly).GetReferencedAssemblies()
            .Select(a => a.Name!)
            .Where(products.Contains)
            .ToList();
        var against = referenced.Except(Layers.AllowedReferences[assembly]).ToList();
        Assert.True(against.Count == 0, $"{assembly} uses types of {string.Join(", ", against)}, which README \"Layers\" puts above it or beside it");
    }

    [Theory]
    [MemberData(nameof(ProductAssemblies))]
    public void NoInternalsVisibleToAnotherProductAssembly(string assembly)
    {
        var products = Layers.AllowedReferences.Keys.ToHashSet(StringComparer.Ordinal);
        var friends = Layers.Load(assembly).GetCustomAttributes<InternalsVisibleToAttribute>()
            .Select(a => a.AssemblyName.Split(',')[0].Trim())
            .ToList();
        var products2 = friends.Where(products.Contains).ToList();
        Assert.True(products2.Count == 0,
            $"{assembly} opens its internals to {string.Join(", ", products2)}: a product assembly uses another one's public surface only (tests may keep theirs)");
        Assert.All(friends, f => Assert.True(f.EndsWith(".Tests", StringComparison.Ordinal) || f == "Vfio.E2E.Probe" || f == "Vfio.Fuzz",
            $"{assembly} opens its internals to {f}, which is not a test assembly"));
    }

    [Fact]
    public void TheRulesSeeTheReferencesThatExist()
    {
        // The checks above are only as good as what reflection reports: the layers that must use each other do.
        string[] Used(string a) => [.. Layers.Load(a).GetReferencedAssemblies().Select(n => n.Name!)];
        Assert.Contains(Layers.Core, Used(Layers.Nvme));
        Assert.Contains(Layers.SpecNvme, Used(Layers.Nvme));
        Assert.Contains(Layers.SpecVirtio, Used(Layers.VirtioNet));
        Assert.Contains(Layers.User, Used(Layers.Emulation));
        Assert.Contains(Layers.SpecNvme, Used(Layers.Emulation));
        Assert.Contains(Layers.SpecVirtio, Used(Layers.Emulation));
        Assert.Contains(Layers.Nvme, Used(Layers.Cli));
        Assert.Contains("Vfio.Tests", Layers.Load(Layers.Core).GetCustomAttributes<InternalsVisibleToAttribute>().Select(a => a.AssemblyName));
    }
}
