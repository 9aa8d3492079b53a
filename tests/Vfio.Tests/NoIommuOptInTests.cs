using System.Reflection;
using Vfio.Host;
using Vfio.Kernel;

namespace Vfio.Tests;

/// <summary>
/// No path through the public API turns No-IOMMU mode on, or opens a device in it, unless the caller opted in
/// explicitly. Searched by reflection over the library's public surface and by scanning its IL for the two
/// opt-ins (<see cref="VfioOpenOptions.AllowNoIommu"/> = true, <see cref="PciHost.EnableNoIommuMode"/>(true))
/// being supplied by the library itself.
/// </summary>
public sealed class NoIommuOptInTests
{
    private static readonly Assembly Library = typeof(VfioDevice).Assembly;

    private static readonly MethodInfo AllowSetter = typeof(VfioOpenOptions).GetProperty(nameof(VfioOpenOptions.AllowNoIommu))!.SetMethod!;
    private static readonly MethodInfo EnableMode = typeof(PciHost).GetMethod(nameof(PciHost.EnableNoIommuMode))!;

    [Fact]
    public void TheOnlyPublicMembersThatEnableNoIommuTakeAnExplicitOptIn()
    {
        var found = new List<string>();
        foreach (var type in Library.GetExportedTypes())
        {
            foreach (var m in type.GetMembers(BindingFlags.Public | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly))
            {
                // IsNoIommu on PciDeviceInfo and IommuGroupInfo reports host state (records the library fills in);
                // setting it on such a record changes nothing on the host.
                if (m.Name.StartsWith("Is", StringComparison.Ordinal) || m.Name.StartsWith("set_Is", StringComparison.Ordinal)) { continue; }
                bool mentions = m.Name.Contains("NoIommu", StringComparison.OrdinalIgnoreCase);
                bool enables = m.Name.StartsWith("Enable", StringComparison.Ordinal) || m.Name.StartsWith("Allow", StringComparison.Ordinal)
                    || m.Name.StartsWith("set_", StringComparison.Ordinal) || m.Name.StartsWith("Set", StringComparison.Ordinal);
                if (mentions && enables && m.MemberType is MemberTypes.Method or MemberTypes.Property)
                {
                    found.Add($"{type.Name}.{m.Name}");
                }
            }
        }
        // set_AllowNoIommu is the opt-in itself (an init-only flag, false by default); EnableNoIommuMode demands an
        // acknowledgement argument. Anything new that enables No-IOMMU must be reviewed and added here.
        Assert.Equal(["PciHost.EnableNoIommuMode", "VfioOpenOptions.AllowNoIommu", "VfioOpenOptions.set_AllowNoIommu"], found.Order(StringComparer.Ordinal));

        var acknowledge = Assert.Single(EnableMode.GetParameters());
        Assert.Equal(typeof(bool), acknowledge.ParameterType);
        Assert.False(acknowledge.HasDefaultValue, "the acknowledgement must be written out by the caller");
        Assert.False(new VfioOpenOptions().AllowNoIommu);
        Assert.Contains(AllowSetter.ReturnParameter.GetRequiredCustomModifiers(), t => t.FullName == "System.Runtime.CompilerServices.IsExternalInit");
    }

    [Fact]
    public void NoLibraryCodeSuppliesTheOptInItself()
    {
        var offenders = new List<string>();
        foreach (var type in Library.GetTypes())
        {
            foreach (var method in type.GetMethods(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly)
                         .Cast<MethodBase>().Concat(type.GetConstructors(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static)))
            {
                if (method == AllowSetter) { continue; }
                byte[]? il = method.GetMethodBody()?.GetILAsByteArray();
                if (il is null) { continue; }
                foreach (int site in CallSites(method.Module, il, AllowSetter, EnableMode))
                {
                    // ldc.i4.1 right before the call: the library passing true on the caller's behalf.
                    if (site > 0 && il[site - 1] == 0x17)
                    {
                        offenders.Add($"{type.FullName}.{method.Name} at IL_{site:x4}");
                    }
                }
            }
        }
        Assert.Empty(offenders);
    }

    [Fact]
    public void TheScanRecognisesAnOptInSuppliedInCode()
    {
        // Guards the scan above against passing vacuously: this method does what the library must not.
        var method = typeof(NoIommuOptInTests).GetMethod(nameof(SuppliesTheOptIn), BindingFlags.NonPublic | BindingFlags.Static)!;
        byte[] il = method.GetMethodBody()!.GetILAsByteArray()!;
        var sites = CallSites(method.Module, il, AllowSetter, EnableMode).ToList();
        Assert.NotEmpty(sites);
        Assert.Contains(sites, s => il[s - 1] == 0x17);
    }

    private static VfioOpenOptions SuppliesTheOptIn() => new() { AllowNoIommu = true };

    /// <summary>Offsets of call/callvirt/newobj instructions whose operand resolves to one of <paramref name="targets"/>.</summary>
    private static IEnumerable<int> CallSites(Module module, byte[] il, params MethodInfo[] targets)
    {
        for (int i = 0; i + 4 < il.Length; i++)
        {
            if (il[i] is not (0x28 or 0x6F)) { continue; }   // call, callvirt
            int token = BitConverter.ToInt32(il, i + 1);
            MethodBase? callee;
            try { callee = module.ResolveMethod(token); }
            catch (Exception e) when (e is ArgumentException or BadImageFormatException) { continue; }   // operand bytes, not an opcode
            if (callee is MethodInfo mi && targets.Any(t => t == mi || (t.DeclaringType == mi.DeclaringType && t.Name == mi.Name)))
            {
                yield return i;
            }
        }
    }
}
