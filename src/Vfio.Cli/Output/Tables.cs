using Spectre.Console;

namespace Vfio.Cli.Output;

/// <summary>Tables as the command prints them: no borders, two spaces between columns, no wrapping (like lspci, ps).</summary>
internal static class Tables
{
    public static Table Create(string? title, params IEnumerable<string> headers)
    {
        var table = new Table { Border = TableBorder.None, ShowHeaders = true };
        if (title is not null) { table.Title = new TableTitle(title); table.Title.Style = new Style(decoration: Decoration.Bold); }
        foreach (var header in headers)
        {
            table.AddColumn(new TableColumn(new Markup($"[bold]{Markup.Escape(header)}[/]")) { NoWrap = true, Padding = new Padding(0, 0, 2, 0) });
        }
        return table;
    }
}
